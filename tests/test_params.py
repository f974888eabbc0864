"""Run parameters given as text are converted by their annotation, or refused with the form."""

from __future__ import annotations

import datetime as dt
import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import pytest
from conftest import flowkit_env

from flowkit import Flow, UsageError
from flowkit.params import ParamValueError, convert


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@pytest.mark.parametrize(
    ("text", "ann", "expected"),
    [
        ("2026-11-24", dt.date, dt.date(2026, 11, 24)),
        ("2026-11-24T02:30", dt.datetime, dt.datetime(2026, 11, 24, 2, 30)),
        (
            "2026-11-24T02:30:00Z",
            dt.datetime,
            dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.timezone.utc),
        ),
        ("02:30", dt.time, dt.time(2, 30)),
        ("data/in.csv", Path, Path("data/in.csv")),
        ("red", Color, Color.RED),
        ("GREEN", Color, Color.GREEN),
        ("2", Level, Level.HIGH),
        ("high", Level, Level.HIGH),
        ("[1, 2]", list[int], [1, 2]),
        ("[1.5, 2]", list[float], [1.5, 2]),
        ('["a", 3]', list, ["a", 3]),
        ('{"region": "eu"}', dict, {"region": "eu"}),
        ('{"a": 1}', dict[str, int], {"a": 1}),
        ("2026-11-24", Optional[dt.date], dt.date(2026, 11, 24)),  # noqa: UP045
        ("2026-11-24", dt.date | None, dt.date(2026, 11, 24)),
        ("fast", Literal["fast", "slow"], "fast"),
        ("7", int, 7),
        ("no", bool, False),
        ("anything", str, "anything"),
        ("as is", int | str, "as is"),  # a union: flowkit cannot choose, the step gets text
    ],
)
def test_text_converts_to_the_annotated_type(text: str, ann: object, expected: object) -> None:
    value = convert(text, ann)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "ann", "says"),
    [
        ("2026-13-01", dt.date, "expected a date as YYYY-MM-DD, like 2026-11-24"),
        ("24/11/2026", dt.date, "YYYY-MM-DD"),
        ("tomorrow", dt.datetime, "YYYY-MM-DDTHH:MM[:SS]"),
        ("25:00", dt.time, "HH:MM[:SS]"),
        ("", Path, "a non-empty path"),
        ("blue", Color, "expected one of: red, green"),
        ("3", Level, "expected one of: LOW, HIGH"),
        ("1,2", list[int], "a JSON array, like [1, 2, 3]"),
        ('[1, "a"]', list[int], "whose items are int"),
        ("[true]", list[int], "whose items are int"),
        ("[1]", dict, "a JSON object"),
        ('{"a": "x"}', dict[str, int], "whose items are int"),
        ("medium", Literal["fast", "slow"], "one of 'fast', 'slow'"),
        ("x", float, "a number, like 2.5"),
        ("maybe", bool, "true or false"),
    ],
)
def test_text_that_does_not_convert_is_refused_with_the_expected_form(
    text: str, ann: object, says: str
) -> None:
    with pytest.raises(ParamValueError) as info:
        convert(text, ann)
    assert str(info.value).startswith(f"{text!r} is not a valid ")
    assert says in str(info.value)


PIPELINE = """\
from __future__ import annotations

import datetime
import enum
import json
from pathlib import Path

from flowkit import Flow


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


flow = Flow("typed")


@flow.step()
def show(day: datetime.date, at: datetime.datetime, out: Path, color: Color,
         ids: list[int], opts: dict) -> None:
    Path("received.json").write_text(json.dumps({
        "day": [type(day).__name__, day.isoformat()],
        "at": [type(at).__name__, at.isoformat()],
        "out": [type(out).__name__, str(out)],
        "color": [type(color).__name__, color.value],
        "ids": ids,
        "opts": opts,
    }))
"""

GOOD = [
    "day=2026-11-24",
    "at=2026-11-24T02:00:00+01:00",
    "out=data/x.csv",
    "color=green",
    "ids=[1, 2]",
    'opts={"region": "eu"}',
]


def _run(tmp_path: Path, *params: str) -> subprocess.CompletedProcess[str]:
    args = [a for p in params for a in ("--param", p)]
    return subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "pipeline.py", *args],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_params_arrive_as_their_annotated_types_and_the_run_resumes(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    r = _run(tmp_path, *GOOD)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "received.json").read_text())
    assert got == {
        "day": ["date", "2026-11-24"],
        "at": ["datetime", "2026-11-24T02:00:00+01:00"],
        "out": ["PosixPath", "data/x.csv"],
        "color": ["Color", "green"],
        "ids": [1, 2],
        "opts": {"region": "eu"},
    }
    again = _run(tmp_path, *GOOD)
    assert again.returncode == 0 and "[CACHED]    show" in again.stdout


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("day=2026-02-30", "expected a date as YYYY-MM-DD"),
        ("color=blue", "expected one of: red, green"),
        ("ids=1,2", "expected a JSON array"),
    ],
)
def test_cli_param_that_does_not_convert_exits_2_naming_step_param_and_form(
    tmp_path: Path, bad: str, says: str
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    r = _run(tmp_path, *GOOD, bad)
    assert r.returncode == 2
    key, _, value = bad.partition("=")
    assert f"parameter {key}={value!r}: step 'show' declares {key}:" in r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / ".flowkit").exists()


def test_api_error_for_a_bad_parameter_does_not_mention_the_command_line(tmp_path: Path) -> None:
    flow = Flow("api_param")

    @flow.step()
    def double(n: int) -> int:
        return n * 2

    with pytest.raises(UsageError) as info:
        flow.run({"n": "abc"}, state_dir=tmp_path)
    assert "--param" not in str(info.value)
    assert str(info.value) == (
        "parameter n='abc': step 'double' declares n: int, and 'abc' is not a valid int; "
        "expected a whole number, like 42"
    )
