"""The flowkit error tree.

FlowkitError                every error flowkit raises on purpose; ``exit_code``: the CLI status
├── FlowDefinitionError (+ValueError)   the flow is invalid: exit 2, before anything runs
│   ├── InvalidStepOptionError          a bad option on one step (negative retries, ...)
│   ├── DuplicateStepError
│   ├── UnknownDependencyError
│   ├── CycleError
│   └── UnboundParameterError / UnknownParameterError
├── UsageError                          bad command line or target: exit 2
│   └── UnknownStepError                a step name given on the command line does not exist
├── StateError                          the state folder cannot be used: exit 2, files untouched
│   ├── CorruptStateError
│   ├── StateVersionError
│   ├── RunLockedError
│   └── StateWriteError             the disk refused a write (full, read-only, not a folder)
├── ExecutorUnavailableError            an optional backend is not installed: exit 2
└── ExtraUnavailableError (+ImportError) an optional feature's extra is not installed: exit 2

A step that fails is not an error of flowkit's: it is recorded in the run result (exit 1).
Its exception is the step's own, or one of these, which flowkit raises on a step's behalf:

StepTimeoutError (+TimeoutError)        an attempt ran past its step's ``timeout``
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import ClassVar

__all__ = [
    "CorruptStateError",
    "CycleError",
    "DuplicateStepError",
    "ExecutorUnavailableError",
    "ExtraUnavailableError",
    "FlowDefinitionError",
    "FlowkitError",
    "InvalidStepOptionError",
    "RunLockedError",
    "RunStoppingError",
    "StateError",
    "StateVersionError",
    "StateWriteError",
    "StepTimeoutError",
    "UnboundParameterError",
    "UnknownDependencyError",
    "UnknownParameterError",
    "UnknownStepError",
    "UnpicklableStepError",
    "UsageError",
    "suggest",
]


def suggest(name: str, known: Collection[str]) -> str | None:
    """The known name closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = suggest(name, known)
    return f" Did you mean {close!r}?" if close else ""


class FlowkitError(Exception):
    """Root of every error flowkit raises on purpose."""

    exit_code: ClassVar[int] = 1


class FlowDefinitionError(FlowkitError, ValueError):
    """The flow (or one of its steps) is invalid; found before anything runs."""

    exit_code: ClassVar[int] = 2


class InvalidStepOptionError(FlowDefinitionError):
    """A step was declared with an option value that cannot work."""

    def __init__(self, step: str, option: str, value: object, expected: str) -> None:
        self.step, self.option, self.value = step, option, value
        super().__init__(f"step {step!r}: {option}={value!r} is invalid: {expected}.")


class DuplicateStepError(FlowDefinitionError):
    """Two steps of one flow share a name."""

    def __init__(self, flow: str, step: str, first: str, second: str) -> None:
        self.flow, self.step = flow, step
        super().__init__(
            f"flow {flow!r} has two steps named {step!r} ({first} and {second}). "
            "Rename one, or pass name=... to the decorator."
        )


class UnknownDependencyError(FlowDefinitionError):
    """A step depends on a name that is not a step of the flow."""

    def __init__(self, step: str, missing: str, known: Collection[str]) -> None:
        self.step, self.missing = step, missing
        self.suggestion = suggest(missing, known)
        hint = f" Did you mean {self.suggestion!r}?" if self.suggestion else ""
        if set("*?[") & set(missing):
            steps = ", ".join(sorted(known)[:20]) or "none"
            super().__init__(
                f"step {step!r} depends on {missing!r}, a pattern that matches no other step "
                f"of this flow (steps: {steps}). Fix the pattern, or name the steps."
            )
            return
        super().__init__(
            f"step {step!r} depends on {missing!r}, which is not a step of this flow.{hint}"
        )


class CycleError(FlowDefinitionError):
    """The steps' dependencies form a cycle."""

    def __init__(self, flow: str, cycle: Sequence[str], where: Sequence[str]) -> None:
        self.flow, self.cycle = flow, list(cycle)
        path = " → ".join([*cycle, cycle[0]])
        places = "\n".join(
            f"  {name}: defined at {loc}" for name, loc in zip(cycle, where, strict=True)
        )
        super().__init__(
            f"cycle in flow {flow!r}: {path}\n{places}\n"
            "Remove one of these dependencies to break the cycle."
        )


class UnboundParameterError(FlowDefinitionError):
    """A step parameter is neither a step, ``ctx``, a defaulted run parameter, nor given."""

    def __init__(self, step: str, param: str, steps: Collection[str]) -> None:
        self.step, self.param = step, param
        if param == step:
            super().__init__(
                f"step {step!r} takes a parameter named {param!r}, like the step itself: a step "
                "cannot receive its own output. Rename the parameter (or the step with name=...)."
            )
            return
        hint = _did_you_mean(param, [s for s in steps if s != step])
        super().__init__(
            f"step {step!r} takes parameter {param!r}, which is not a step of this flow, "
            f"not 'ctx', and has no value: give it a default or pass --param {param}=VALUE."
            f"{hint}"
        )


class UnknownParameterError(FlowDefinitionError):
    """A run parameter was given that no step takes."""

    def __init__(self, flow: str, param: str, known: Collection[str]) -> None:
        self.param = param
        accepted = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"parameter {param!r} is not taken by any step of flow {flow!r} "
            f"(run parameters: {accepted}).{_did_you_mean(param, known)}"
        )


class FlowProblemsError(FlowDefinitionError):
    """Several things are wrong with a flow: all of them, in one message (``.problems``)."""

    def __init__(self, flow: str, problems: Sequence[FlowDefinitionError]) -> None:
        self.flow, self.problems = flow, list(problems)
        listed = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, 1))
        super().__init__(f"{len(self.problems)} problems in flow {flow!r}:\n{listed}")

    @staticmethod
    def raise_all(flow: str, problems: Sequence[FlowDefinitionError]) -> None:
        """Raise the one problem as itself, several as one FlowProblemsError; none: return."""
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise FlowProblemsError(flow, problems)


class UsageError(FlowkitError):
    """The command line or the target is invalid."""

    exit_code: ClassVar[int] = 2


class UnknownStepError(UsageError):
    """A step named on the command line is not a step of the flow."""

    def __init__(self, name: str, known: Collection[str]) -> None:
        self.name = name
        super().__init__(f"no step named {name!r} in this flow.{_did_you_mean(name, known)}")


class StateError(FlowkitError):
    """The state folder cannot be used as it is. Files are never modified when this is raised."""

    exit_code: ClassVar[int] = 2


class CorruptStateError(StateError):
    """A state file does not parse (and it is not a torn last line)."""

    def __init__(self, path: Path, line: int | None, detail: str) -> None:
        self.path, self.line = path, line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(
            f"corrupt state file {where}: {detail}. Nothing was changed. Start over with --fresh "
            f"(the old state is moved aside), or delete the run with 'flowkit clean'."
        )


class StateVersionError(StateError):
    """The state was written by a newer flowkit."""

    def __init__(self, path: Path, found: int, supported: int) -> None:
        self.path, self.found = path, found
        super().__init__(
            f"{path} uses state format {found}, but this flowkit reads format {supported} and "
            "older. Upgrade flowkit, or run with --fresh to start this run over."
        )


class RunLockedError(StateError):
    """Another live process is running the same run."""

    def __init__(self, run_id: str, holder: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} is already running ({holder}). Wait for it to finish, or stop it; "
            "a lock left by a killed process is released automatically."
        )


class StateWriteError(StateError):
    """The state folder cannot be written: the disk is full, it is read-only, or not a folder.

    Temporary files are removed and the journal keeps its last complete record, so the run can be
    resumed once the cause is fixed.
    """

    def __init__(self, path: Path, cause: OSError, hint: str | None = None) -> None:
        self.path, self.cause = path, cause
        reason = cause.strerror or str(cause)
        if hint is None:
            hint = (
                f"{_write_hint(cause)} Finished steps are kept: run the same command again to "
                "resume once this is fixed."
            )
        super().__init__(f"cannot write state to {path}: {reason}. {hint}")


def _write_hint(cause: OSError) -> str:
    if cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "Free some space (or raise the quota), or pass --state-dir on another disk."
    if cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            "The state folder is read-only: make it writable, or pass a writable --state-dir "
            "(status, report, runs, logs, explain and graph only read it)."
        )
    if cause.errno in (errno.ENOTDIR, errno.EEXIST):
        return "A file is in the way of the state folder: pass --state-dir a folder, or move it."
    if cause.errno == errno.ENAMETOOLONG:
        return "Use a shorter --state-dir."
    return "Check the state folder, or pass another --state-dir."


class ExecutorUnavailableError(FlowkitError):
    """An optional execution backend is not installed."""

    exit_code: ClassVar[int] = 2


class RunStoppingError(FlowkitError):
    """An attempt ended because the run cannot go on (its cluster went away, say).

    Not a failure of the step: the engine stops the run with ``status`` (``interrupted``) and
    journals nothing for the attempt, so running the same command again resumes.
    """

    exit_code: ClassVar[int] = 130

    def __init__(self, message: str, status: str = "interrupted") -> None:
        self.status = status
        super().__init__(message)


class UnpicklableStepError(FlowDefinitionError):
    """A step cannot be sent to a worker process or a cluster (found before the run starts)."""

    def __init__(self, step: str, executor: str, reason: str) -> None:
        self.step, self.executor = step, executor
        super().__init__(
            f"step {step!r} cannot be sent to the {executor} executor's workers: {reason}. "
            "Define it at the top level of a module (or make what it refers to picklable), "
            "or run it with --executor thread."
        )


class ExtraUnavailableError(FlowkitError, ImportError):
    """An optional feature's extra (``flowkit[rich]``, ``flowkit[otel]``) is not installed."""

    exit_code: ClassVar[int] = 2

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature, self.extra = feature, extra
        super().__init__(
            f"{feature} needs the {extra!r} extra ({missing} is not installed): "
            f"pip install 'flowkit[{extra}]'"
        )


class StepTimeoutError(TimeoutError):
    """An attempt ran past its step's ``timeout`` (the step ends ``timed_out``).

    A ``TimeoutError``, so the default ``retry_on=(Exception,)`` retries it; leave it out with
    ``giveup_on=(StepTimeoutError,)``. A shell step's timeout raises
    :class:`flowkit.ShellTimeoutError`, also a ``TimeoutError``.
    """
