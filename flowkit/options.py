"""How to run a flow: one frozen value built once, by the CLI or the Python API.

:class:`RunOptions` replaces the keyword lists that ``Flow.run``, ``Flow.plan``, ``Flow.stream``
and ``Schedule`` used to repeat. It holds what the user chose (executor, workers, selection
patterns, deadlines, durability, seed) and, for tests and embedders, the clock and sleep the
engine uses, so nothing has to wait for real. :class:`Selection` is the selection resolved
against one graph (step names, not patterns), which is what the engine and the plan read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import UsageError

__all__ = ["EXECUTORS", "UNSET", "RunOptions", "Selection"]

EXECUTORS = ("inline", "thread", "process", "dask")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything about *how* a run goes, apart from the flow, its parameters and its state.

    Args:
        executor: ``inline``, ``thread``, ``process`` or ``dask``; None picks inline for one
            worker and threads otherwise.
        workers: how many steps may run at once.
        address: a Dask scheduler address (``executor="dask"``); None starts a local cluster.
        fail_fast: stop starting steps after a failure (False: run all that can run).
        rerun: steps (names or globs) to run again, with everything downstream of them.
        only: run just these steps (names or globs); their upstreams need stored results.
        timeout: seconds for the whole run; on expiry it stops and can be resumed later.
        grace: seconds running steps get to finish after an interruption.
        durability: ``flush`` (survives a process crash) or ``fsync`` (survives power loss).
        seed: seeds the retry jitter.
        handle_signals: turn SIGINT/SIGTERM into a clean interruption (the CLI does this).
        clock: the monotonic clock of deadlines and retry delays (``time.monotonic``).
        sleep: waits for a retry's delay when nothing runs; None waits on the engine's own
            wake-up (cut short by a stop request).

    Raises:
        UsageError: a value out of range (the message names the option and the fix).
    """

    executor: str | None = None
    workers: int = 1
    address: str | None = None
    fail_fast: bool = True
    rerun: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    timeout: float | None = None
    grace: float = 10.0
    durability: str = "flush"
    seed: int | None = None
    handle_signals: bool = False
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    sleep: Callable[[float], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rerun, str) or isinstance(self.only, str):
            raise UsageError("rerun= and only= take a list of step names or globs, not a string")
        object.__setattr__(self, "rerun", tuple(self.rerun))
        object.__setattr__(self, "only", tuple(self.only))
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise UsageError(f"workers must be >= 1, got {self.workers!r}")
        if self.executor is not None and self.executor not in EXECUTORS:
            raise UsageError(
                f"unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}"
            )
        if not (isinstance(self.grace, (int, float)) and self.grace >= 0):
            raise UsageError(f"grace must be a number of seconds >= 0, got {self.grace!r}")
        if self.timeout is not None and not (
            isinstance(self.timeout, (int, float)) and self.timeout > 0
        ):
            raise UsageError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if self.durability not in ("flush", "fsync"):
            raise UsageError(f"durability must be 'flush' or 'fsync', got {self.durability!r}")

    @property
    def kind(self) -> str:
        """The executor that runs: the one named, or inline for one worker, else threads."""
        return self.executor or ("inline" if self.workers == 1 else "thread")

    def but(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (validated like the original)."""
        return replace(self, **changes)

    @classmethod
    def of(cls, options: RunOptions | None, **keywords: Any) -> RunOptions:
        """``options`` with ``keywords`` laid over it (the keyword API of ``Flow.run``)."""
        base = options if options is not None else cls()
        given = {k: v for k, v in keywords.items() if v is not UNSET}
        for key in ("rerun", "only"):
            if key in given and not isinstance(given[key], str):
                given[key] = tuple(given[key])
        return replace(base, **given) if given else base


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: The default of keyword arguments laid over a RunOptions: "not given, keep the option's value".
UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class Selection:
    """``--rerun`` / ``--only`` resolved against one graph.

    ``force``: steps that run again whatever is stored; ``only``: the chosen steps (None: all);
    ``needed``: with ``only``, those steps and their upstreams (the rest is not even decided).
    """

    force: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    needed: frozenset[str] | None = None

    @staticmethod
    def of(
        force: Iterable[str], only: Iterable[str] | None, needed: Iterable[str] | None
    ) -> Selection:
        """Build one from plain iterables."""
        return Selection(
            frozenset(force),
            frozenset(only) if only is not None else None,
            frozenset(needed) if needed is not None else None,
        )
