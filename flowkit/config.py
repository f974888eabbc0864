"""Project settings for run options: ``[tool.flowkit]`` in ``pyproject.toml`` and ``FLOWKIT_*``
environment variables.

Precedence, highest first: a command-line flag, an environment variable, ``[tool.flowkit]`` in
the nearest ``pyproject.toml`` (found by walking up from the working directory), the default.
``flowkit config`` prints the effective settings and where each came from.

```toml
[tool.flowkit]
state_dir = "build/flowkit"      # relative to the pyproject.toml's folder
workers = 4
executor = "thread"
durability = "fsync"
notify = ["slack:https://hooks.slack.com/services/..."]
notify_on = ["failed", "succeeded"]   # run outcomes that alert (default: the problems)
notify_timeout = 20                   # seconds for each alert's delivery, retries included
cost_rate = {cpu_hour = 0.05, gb_hour = 0.01}   # or "cpu_hour=0.05,gb_hour=0.01"
```
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .executors import EXECUTORS
from .result import RunStatus

__all__ = ["SETTINGS", "ConfigError", "Setting", "Value", "find_pyproject", "resolve"]

DURABILITY = ("flush", "fsync")


class ConfigError(UsageError):
    """A setting in ``[tool.flowkit]`` or a ``FLOWKIT_*`` variable is unknown or invalid."""


def _workers(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: workers must be a whole number >= 1, got {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(options)}")
        return str(value)

    return check


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _specs(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # the environment: specs separated by spaces
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{where}: expected a list of KIND:TARGET strings, e.g. ['slack:URL'], got {value!r}"
        )
    return list(value)


#: What ``notify_on`` accepts: every outcome of a finished run, and ``always``.
OUTCOMES = (*(s.value for s in RunStatus if s is not RunStatus.RUNNING), "always")


def _outcomes(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # the environment: outcomes separated by commas or spaces
        value = value.replace(",", " ").split()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{where}: expected a list of run outcomes, e.g. ['failed', 'succeeded'], got {value!r}"
        )
    wrong = [v for v in value if v not in OUTCOMES]
    if wrong:
        raise ConfigError(f"{where}: {wrong[0]!r} is not a run outcome; use {', '.join(OUTCOMES)}")
    return list(value)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}: expected a number of seconds > 0, got {value!r}")
    return float(value)


def _rates(value: Any, where: str) -> str:
    """Cost rates as ``--cost-rate`` text: ``"cpu_hour=0.05,gb_hour=0.01"``, or in TOML a table
    ``{cpu_hour = 0.05, gb_hour = 0.01}``."""
    from .cost import CostRates

    if isinstance(value, Mapping):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected rates like 'cpu_hour=0.05,gb_hour=0.01'")
    try:
        CostRates.parse(value, where)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    return value


@dataclass(frozen=True)
class Setting:
    """One run option settable by project configuration."""

    name: str
    flag: str
    check: Callable[[Any, str], Any]
    default: Any
    help: str

    @property
    def env(self) -> str:
        return f"FLOWKIT_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("state_dir", "--state-dir", _text, ".flowkit", "folder of run state"),
    Setting("workers", "--workers", _workers, 1, "steps run at once"),
    Setting(
        "executor",
        "--executor",
        _choice(EXECUTORS),
        None,
        "inline, thread, process or dask (default: inline for 1 worker, thread otherwise)",
    ),
    Setting("address", "--address", _text, None, "Dask scheduler address for executor dask"),
    Setting("notify", "--notify", _specs, [], "alerts when a run ends: KIND:TARGET, ..."),
    Setting(
        "notify_on",
        "--notify-on",
        _outcomes,
        None,
        "run outcomes that alert (default: failed, timed_out, interrupted)",
    ),
    Setting(
        "notify_timeout",
        "--notify-timeout",
        _seconds,
        10.0,
        "seconds for each alert's delivery, retries included",
    ),
    Setting("durability", "--durability", _choice(DURABILITY), "flush", "flush or fsync"),
    Setting(
        "cost_rate", "--cost-rate", _rates, None, "prices of cpu_hour / gb_hour for step costs"
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Value:
    """A setting's effective value and where it came from (``flag``, ``env FLOWKIT_X``,
    ``pyproject.toml PATH``, ``default``)."""

    value: Any
    source: str


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return data


def project_table(cwd: Path) -> tuple[Path | None, dict[str, Any]]:
    """The nearest pyproject.toml and its ``[tool.flowkit]`` table (checked: unknown keys are
    an error with a suggestion)."""
    path = find_pyproject(cwd)
    if path is None:
        return None, {}
    table = _load_toml(path).get("tool", {}).get("flowkit", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [tool.flowkit] must be a table")
    for key in table:
        if key not in _BY_NAME:
            close = difflib.get_close_matches(key.replace("-", "_"), _BY_NAME, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}: [tool.flowkit] has an unknown key {key!r}.{hint} Known keys: "
                f"{', '.join(_BY_NAME)}"
            )
    return path, dict(table)


def resolve(
    flags: Mapping[str, Any],
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Value]:
    """Every setting's effective value: ``flags`` (None or empty: not given), else
    ``$FLOWKIT_<NAME>``, else ``[tool.flowkit]``, else the default.

    Raises:
        ConfigError: an unknown ``[tool.flowkit]`` key, or a value of the wrong kind (the
            message names the variable or the file and key).
    """
    cwd = Path.cwd() if cwd is None else cwd
    env = os.environ if environ is None else environ
    path, table = project_table(cwd)
    out: dict[str, Value] = {}
    for s in SETTINGS:
        given = flags.get(s.name)
        if given is not None and given != []:
            out[s.name] = Value(given, "flag " + s.flag)
        elif env.get(s.env):
            out[s.name] = Value(s.check(env[s.env], f"${s.env}"), f"env {s.env}")
        elif s.name in table and path is not None:
            value = s.check(table[s.name], f"{path} [tool.flowkit] {s.name}")
            if s.name == "state_dir":
                value = str(path.parent / value)
            out[s.name] = Value(value, f"pyproject.toml {path}")
        else:
            out[s.name] = Value(s.default, "default")
    return out


def apply(args: Any, flow_workers: int) -> None:
    """Fill the run options a command has and its flags left unset (``args``, an argparse
    namespace) from the environment and ``[tool.flowkit]``. ``flow_workers``: the flow's own
    default (a workflow file's largest parallelism), used when nothing sets workers."""
    names = [s.name for s in SETTINGS if hasattr(args, s.name)]
    values = resolve({n: getattr(args, n) for n in names})
    for name in names:
        got = values[name]
        if name == "workers" and got.source == "default":
            setattr(args, name, flow_workers)
        elif name == "state_dir" and got.source == "default":
            setattr(args, name, None)  # the store's own default
        else:
            setattr(args, name, got.value)
