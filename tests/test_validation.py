"""Flow validation: bad flows are rejected before anything runs, with errors that name the step,
the offending value and (where it helps) the closest valid name; plus the ways of building a flow.

Each error kind is checked in-process (exception type, attributes, message) and once through the
command line (exit code 2, the message on stderr, nothing written).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cliflows import flowkit, write

from flowkit import (
    Context,
    CycleError,
    DuplicateStepError,
    Flow,
    FlowDefinitionError,
    InvalidStepOptionError,
    StepStarted,
    Trigger,
    UnboundParameterError,
    UnknownDependencyError,
    UnknownParameterError,
    step,
)
from flowkit.events import Event


def defined_at(fn: Callable[..., Any]) -> set[str]:
    """``file:line`` of the function's first decorator and of its ``def`` (either may be shown)."""
    lines, start = inspect.getsourcelines(fn)
    offset = next(i for i, text in enumerate(lines) if text.lstrip().startswith("def "))
    path = inspect.getsourcefile(fn)
    return {f"{path}:{start}", f"{path}:{start + offset}"}


def message_line(message: str, name: str) -> str:
    return next(line for line in message.splitlines() if line.strip().startswith(f"{name}:"))


# --- unknown dependency --------------------------------------------------------------------------


def test_unknown_dependency_names_step_missing_name_and_closest_step() -> None:
    flow = Flow("etl")

    @flow.step()
    def fetch() -> int:
        return 1

    @flow.step()
    def transform(fetch: int) -> int:
        return fetch

    @flow.step(depends_on=["transfrom"])
    def report() -> None:
        return None

    with pytest.raises(UnknownDependencyError) as info:
        flow.graph()
    err = info.value
    assert (err.step, err.missing, err.suggestion) == ("report", "transfrom", "transform")
    assert str(err) == (
        "step 'report' depends on 'transfrom', which is not a step of this flow. "
        "Did you mean 'transform'?"
    )
    assert isinstance(err, FlowDefinitionError) and isinstance(err, ValueError)
    assert err.exit_code == 2


def test_unknown_dependency_without_a_close_name_suggests_nothing() -> None:
    flow = Flow("etl")

    @flow.step()
    def fetch() -> int:
        return 1

    @flow.step(depends_on=["zzz"])
    def report() -> None:
        return None

    with pytest.raises(UnknownDependencyError) as info:
        flow.graph()
    assert info.value.suggestion is None
    assert "Did you mean" not in str(info.value)
    assert "'zzz'" in str(info.value)


def test_unknown_dependency_given_as_a_function_outside_the_flow_is_named() -> None:
    @step
    def elsewhere() -> int:
        return 1

    flow = Flow("etl")

    @flow.step(depends_on=[elsewhere])
    def report() -> None:
        return None

    with pytest.raises(UnknownDependencyError) as info:
        flow.graph()
    assert (info.value.step, info.value.missing) == ("report", "elsewhere")


def test_invalid_flow_runs_nothing_and_writes_nothing(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = Flow("etl")

    @flow.step()
    def fetch() -> int:
        calls.append("fetch")
        return 1

    @flow.step(depends_on=["fecth"])
    def report(fetch: int) -> int:
        calls.append("report")
        return fetch

    with pytest.raises(UnknownDependencyError):
        flow.run()
    with pytest.raises(UnknownDependencyError):
        flow.plan()
    assert calls == []
    assert list(tmp_path.iterdir()) == []


# --- cycles --------------------------------------------------------------------------------------


def test_cycle_message_shows_the_whole_path_and_where_each_step_is_defined() -> None:
    flow = Flow("loop")

    @flow.step()
    def start() -> int:
        return 0

    @flow.step(depends_on=["c"])
    def a(start: int) -> int:
        return start

    @flow.step()
    def b(a: int) -> int:
        return a

    @flow.step()
    def c(b: int) -> int:
        return b

    @flow.step()
    def end(c: int) -> int:
        return c

    with pytest.raises(CycleError) as info:
        flow.graph()
    err = info.value
    message = str(err)
    # a feeds b, b feeds c, c feeds a: any starting point, but the direction of the edges
    rotations = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert err.cycle in rotations
    assert err.flow == "loop"
    path = " → ".join([*err.cycle, err.cycle[0]])
    assert message.splitlines()[0] == f"cycle in flow 'loop': {path}"
    for fn in (a, b, c):
        line = message_line(message, fn.__name__)
        assert any(place in line for place in defined_at(fn)), line
    assert "start:" not in message and "end:" not in message


def test_step_depending_on_itself_is_a_cycle() -> None:
    flow = Flow("selfish")

    @flow.step(depends_on=["again"])
    def again() -> None:
        return None

    with pytest.raises(CycleError) as info:
        flow.graph()
    assert info.value.cycle == ["again"]
    assert "again → again" in str(info.value)


def test_cycle_is_found_through_order_only_dependencies() -> None:
    flow = Flow("order")

    @flow.step(depends_on=["second"])
    def first() -> None:
        return None

    @flow.step(depends_on=["first"])
    def second() -> None:
        return None

    with pytest.raises(CycleError) as info:
        flow.run()
    assert sorted(info.value.cycle) == ["first", "second"]


# --- duplicate names -----------------------------------------------------------------------------


def test_duplicate_step_name_is_rejected_at_registration_naming_both_places() -> None:
    flow = Flow("dup")

    @flow.step()
    def load() -> int:
        return 1

    def other() -> int:
        return 2

    with pytest.raises(DuplicateStepError) as info:
        flow.step(name="load")(other)
    err = info.value
    assert (err.flow, err.step) == ("dup", "load")
    message = str(err)
    assert message.startswith("flow 'dup' has two steps named 'load' (")
    assert any(place in message for place in defined_at(load))
    assert f"{inspect.getsourcefile(other)}:{other.__code__.co_firstlineno}" in message
    assert "pass name=" in message
    assert flow.steps["load"].fn is load


def test_duplicate_step_name_in_flow_steps_list_is_rejected() -> None:
    @step(name="load")
    def load_csv() -> int:
        return 1

    @step(name="load")
    def load_json() -> int:
        return 2

    with pytest.raises(DuplicateStepError) as info:
        Flow("dup", steps=[load_csv, load_json])
    assert info.value.step == "load"


# --- parameters ----------------------------------------------------------------------------------


def test_unbound_parameter_names_step_and_parameter_and_how_to_give_it(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = Flow("sales")

    @flow.step()
    def fetch() -> int:
        calls.append("fetch")
        return 1

    @flow.step()
    def report(fetch: int, region: str) -> str:
        return f"{region}:{fetch}"

    flow.graph()  # the shape is valid: parameters are only bound when running
    with pytest.raises(UnboundParameterError) as info:
        flow.run()
    err = info.value
    assert (err.step, err.param) == ("report", "region")
    assert str(err) == (
        "step 'report' takes parameter 'region', which is not a step of this flow, not 'ctx', "
        "and has no value: give it a default or pass --param region=VALUE."
    )
    with pytest.raises(UnboundParameterError):
        flow.plan()
    assert calls == []
    assert list(tmp_path.iterdir()) == []


def test_unbound_parameter_that_resembles_a_step_suggests_the_step() -> None:
    flow = Flow("sales")

    @flow.step()
    def fetch() -> int:
        return 1

    @flow.step()
    def report(fecth: int) -> int:
        return fecth

    with pytest.raises(UnboundParameterError) as info:
        flow.run()
    assert info.value.param == "fecth"
    assert str(info.value).endswith("Did you mean 'fetch'?")


def test_unbound_parameter_named_after_its_own_step_does_not_suggest_itself() -> None:
    flow = Flow("sales")

    @flow.step()
    def total(total: int) -> int:
        return total

    with pytest.raises(FlowDefinitionError) as info:
        flow.run()
    assert "'total'" in str(info.value)
    assert "Did you mean 'total'?" not in str(info.value), str(info.value)


def test_parameters_bound_by_step_ctx_default_or_given_value_run() -> None:
    flow = Flow("sales")

    @flow.step()
    def fetch() -> int:
        return 2

    @flow.step()
    def report(fetch: int, ctx: Context, region: str, factor: int = 10) -> str:
        return f"{ctx.step}:{region}:{fetch * factor}"

    result = flow.run({"region": "eu"})
    assert result.ok
    assert result["report"].output == "report:eu:20"


def test_given_parameter_no_step_takes_is_rejected_with_suggestion() -> None:
    flow = Flow("sales")

    @flow.step()
    def fetch(region: str = "eu") -> str:
        return region

    with pytest.raises(UnknownParameterError) as info:
        flow.run({"regoin": "us"})
    assert info.value.param == "regoin"
    assert "(run parameters: region)" in str(info.value)
    assert str(info.value).endswith("Did you mean 'region'?")


# --- step options --------------------------------------------------------------------------------


TRIGGERS = [t.value for t in Trigger]


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("retries", -1, "an integer >= 0"),
        ("retries", 1.5, "an integer >= 0"),
        ("retries", True, "an integer >= 0"),
        ("timeout", 0, "a number of seconds > 0, or None"),
        ("timeout", -2.5, "a number of seconds > 0, or None"),
        ("timeout", "10", "a number of seconds > 0, or None"),
        ("trigger", "sometimes", f"one of {TRIGGERS}"),
        ("when", 42, "a callable returning a bool"),
        ("retry_on", ValueError("x"), "an exception type or a tuple of them"),
        ("retry_on", int, "an exception type or a tuple of them"),
        ("retry_on", (OSError, "x"), "an exception type or a tuple of them"),
    ],
)
def test_invalid_step_option_is_rejected_at_decoration_naming_step_and_value(
    option: str, value: object, expected: str
) -> None:
    flow = Flow("opts")

    def load() -> int:
        return 1

    with pytest.raises(InvalidStepOptionError) as info:
        flow.step(**{option: value})(load)
    err = info.value
    assert (err.step, err.option) == ("load", option)
    assert err.value is value
    assert str(err) == f"step 'load': {option}={value!r} is invalid: {expected}."
    assert "load" not in flow.steps


@pytest.mark.parametrize("option", ["timeout", "cache_ttl"])
def test_nan_seconds_are_rejected_like_other_non_positive_durations(option: str) -> None:
    nan = float("nan")

    def load() -> int:
        return 1

    with pytest.raises(InvalidStepOptionError) as info:
        Flow("opts").step(**{option: nan})(load)
    assert (info.value.step, info.value.option) == ("load", option)


def test_invalid_option_on_bare_step_decorator_raises_when_decorating() -> None:
    with pytest.raises(InvalidStepOptionError) as info:

        @step(timeout=0)
        def slow() -> None:
            return None

    assert (info.value.step, info.value.option, info.value.value) == ("slow", "timeout", 0)


def test_invalid_flow_default_is_reported_on_the_step_it_reaches() -> None:
    flow = Flow("opts", defaults={"retries": -3})
    with pytest.raises(InvalidStepOptionError) as info:

        @flow.step()
        def load() -> int:
            return 1

    assert (info.value.step, info.value.option, info.value.value) == ("load", "retries", -3)


def test_misspelled_option_is_rejected_listing_the_valid_ones() -> None:
    with pytest.raises(InvalidStepOptionError) as info:

        @step(retires=2)  # type: ignore[call-overload]
        def load() -> None:
            return None

    assert (info.value.step, info.value.option) == ("load", "retires")
    assert "'retries'" in str(info.value)


def test_valid_step_options_are_accepted() -> None:
    flow = Flow("opts")

    @flow.step(
        retries=0,
        timeout=2.5,
        trigger="all_done",
        when=lambda: True,
        retry_on=(OSError, ValueError),
    )
    def load() -> int:
        return 1

    spec = flow.steps["load"]
    assert spec.retry.retries == 0
    assert spec.timeout == 2.5
    assert spec.trigger is Trigger.ALL_DONE
    assert spec.retry.retry_on == (OSError, ValueError)


# --- building flows ------------------------------------------------------------------------------


def test_generations_of_a_diamond_are_sorted_tiers_whatever_the_registration_order() -> None:
    def top() -> int:
        return 1

    def zulu(top: int) -> int:
        return top + 1

    def alpha(top: int) -> int:
        return top + 2

    def bottom(zulu: int, alpha: int) -> int:
        return zulu + alpha

    expected = [["top"], ["alpha", "zulu"], ["bottom"]]
    for order in (
        [top, zulu, alpha, bottom],
        [bottom, alpha, zulu, top],
        [zulu, bottom, top, alpha],
    ):
        flow = Flow("diamond")
        for fn in order:
            flow.step(fn)
        assert flow.generations() == expected
    tiers = flow.generations()
    tiers[0].append("intruder")
    assert flow.generations() == expected
    assert flow.run().outputs == {"top": 1, "zulu": 2, "alpha": 3, "bottom": 5}


def test_bare_step_decorator_with_flow_steps_list_builds_and_runs() -> None:
    @step
    def extract() -> list[int]:
        return [1, 2, 3]

    @step(depends_on=[extract])
    def audit() -> str:
        return "checked"

    @step(depends_on=["audit"])
    def load(extract: list[int]) -> int:
        return sum(extract)

    assert extract() == [1, 2, 3]  # still the plain function
    flow = Flow("etl", steps=[load, audit, extract])
    assert list(flow.steps) == ["load", "audit", "extract"]
    node = flow.graph().nodes["load"]
    assert (node.data_deps, node.order_deps) == (("extract",), ("audit",))
    assert flow.generations() == [["extract"], ["audit"], ["load"]]
    started: list[str] = []
    result = flow.run(
        on_event=lambda e: started.append(e.step) if isinstance(e, StepStarted) else None
    )
    assert result.ok
    assert started == ["extract", "audit", "load"]
    assert result.outputs == {"extract": [1, 2, 3], "audit": "checked", "load": 6}


def test_flow_steps_list_rejects_an_unmarked_function() -> None:
    def plain() -> None:
        return None

    with pytest.raises(FlowDefinitionError, match=r"'plain' is not a step; decorate it with @step"):
        Flow("etl", steps=[plain])


def test_programmatic_thousand_step_chain_builds_and_runs(tmp_path: Path) -> None:
    flow = Flow("chain")

    def link(ctx: Context) -> str:
        return ctx.step

    for i in range(1000):
        flow.step(name=f"s{i}", depends_on=[f"s{i - 1}"] if i else [])(link)

    assert len(flow.steps) == 1000
    assert flow.generations() == [[f"s{i}"] for i in range(1000)]
    started: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, StepStarted):
            started.append(event.step)

    result = flow.run(on_event=on_event)
    assert result.ok
    assert result.counts() == {"succeeded": 1000}
    assert started == [f"s{i}" for i in range(1000)]
    assert result["s0"].output == "s0"
    assert result["s999"].output == "s999"
    again = flow.run()
    assert again.counts() == {"cached": 1000}
    assert again["s999"].output == "s999"


# --- through the command line: exit 2, message on stderr, nothing written ------------------------

HEADER = "from flowkit import Flow\n\nbad = Flow('bad')\n\n"

CLI_CASES: dict[str, tuple[str, str]] = {
    "unknown-dependency": (
        "@bad.step()\ndef fetch():\n    return 1\n\n"
        "@bad.step(depends_on=['fecth'])\ndef report():\n    return 2\n",
        "step 'report' depends on 'fecth', which is not a step of this flow. Did you mean 'fetch'?",
    ),
    "cycle": (
        "@bad.step(depends_on=['c'])\ndef a():\n    return 1\n\n"
        "@bad.step()\ndef b(a):\n    return a\n\n"
        "@bad.step()\ndef c(b):\n    return b\n",
        "cycle in flow 'bad': a → b → c → a\n  a: defined at {path}:5\n"
        "  b: defined at {path}:9\n  c: defined at {path}:13\n",
    ),
    "duplicate": (
        "@bad.step()\ndef a():\n    return 1\n\n@bad.step(name='a')\ndef b():\n    return 2\n",
        "flow 'bad' has two steps named 'a' ({path}:5 and {path}:9)",
    ),
    "unbound-parameter": (
        "@bad.step()\ndef report(region):\n    return region\n",
        "step 'report' takes parameter 'region'",
    ),
    "negative-retries": (
        "@bad.step(retries=-1)\ndef a():\n    return 1\n",
        "step 'a': retries=-1 is invalid: an integer >= 0.",
    ),
    "zero-timeout": (
        "@bad.step(timeout=0)\ndef a():\n    return 1\n",
        "step 'a': timeout=0 is invalid",
    ),
    "unknown-trigger": (
        "@bad.step(trigger='sometimes')\ndef a():\n    return 1\n",
        "step 'a': trigger='sometimes' is invalid",
    ),
    "non-callable-when": (
        "@bad.step(when=True)\ndef a():\n    return 1\n",
        "step 'a': when=True is invalid: a callable returning a bool.",
    ),
    "retry-on-not-exception": (
        "@bad.step(retry_on=KeyError('k'))\ndef a():\n    return 1\n",
        "step 'a': retry_on=KeyError('k') is invalid",
    ),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_invalid_flow_exits_2_on_the_command_line(tmp_path: Path, case: str) -> None:
    body, expected = CLI_CASES[case]
    path = write(tmp_path, "bad.py", HEADER + body)
    r = flowkit("run", "bad.py:bad", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith("flowkit: error: ")
    assert expected.format(path=path) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / ".flowkit").exists()


def test_several_problems_in_a_flow_are_reported_together() -> None:
    from flowkit import FlowProblemsError

    flow = Flow("bad")

    @flow.step()
    def a() -> int:
        return 1

    @flow.step(depends_on=["nope"])
    def b(aa: int) -> int:
        return aa

    with pytest.raises(FlowProblemsError) as caught:
        flow.run({"colr": "red"})
    text = str(caught.value)
    assert text.startswith("3 problems in flow 'bad':\n  1. step 'b' depends on 'nope'")
    assert "2. parameter 'colr' is not taken by any step" in text
    assert "3. step 'b' takes parameter 'aa'" in text and "Did you mean 'a'?" in text
    assert [type(p).__name__ for p in caught.value.problems] == [
        "UnknownDependencyError",
        "UnknownParameterError",
        "UnboundParameterError",
    ]


def test_a_single_problem_keeps_its_own_error_type() -> None:
    flow = Flow("one")

    @flow.step(depends_on=["nope"])
    def b() -> int:
        return 1

    with pytest.raises(UnknownDependencyError, match="'nope'"):
        flow.run()
