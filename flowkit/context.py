"""``ctx``: what a step sees of its run, and a dict-like store whose writes are checkpointed.

Writes a step makes to ``ctx`` are journaled with that step's result, and restored when the step
is cached on a resume, so code in the "shared dict" style resumes as well as code that passes
return values.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["Context"]


class Context(MutableMapping[str, Any]):
    """The run context handed to a step that takes a ``ctx`` parameter.

    Attributes:
        run_id: the run's id. flow: the flow's name. step: this step's name.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        params: the run parameters (given and defaulted).
        log: a logger named ``flowkit.step.<step>``.

    ``ctx.upstream`` maps each upstream step's name to its ``StepResult`` (status, attempts,
    duration, error; the output is passed as an argument to steps that take it).

    Reading ``ctx[key]`` sees values written by steps that finished before this one (this run or
    a resumed one) and this step's own writes. Keys cannot be deleted: a checkpointed write is
    never silently undone.
    """

    __slots__ = (
        "_base",
        "_results",
        "_up",
        "attempt",
        "flow",
        "log",
        "params",
        "run_id",
        "step",
        "writes",
    )

    def __init__(
        self,
        run_id: str,
        flow: str,
        step: str,
        attempt: int,
        params: Mapping[str, Any],
        base: Mapping[str, Any],
        results: Mapping[str, Any] | None = None,
        upstream: tuple[str, ...] = (),
    ) -> None:
        self.run_id, self.flow, self.step, self.attempt = run_id, flow, step, attempt
        self.params = dict(params)
        self.log = logging.getLogger(f"flowkit.step.{step}")
        self._base = base
        self.writes: dict[str, Any] = {}
        self._results, self._up = results, upstream

    @property
    def upstream(self) -> dict[str, Any]:
        """The results of this step's upstream steps, by name (see the class docstring)."""
        results = self._results
        if not results:
            return {}
        return {n: results[n] for n in self._up if n in results}

    def __getitem__(self, key: str) -> Any:
        if key in self.writes:
            return self.writes[key]
        return self._base[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ctx keys must be strings, got {key!r}")
        self.writes[key] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"ctx[{key!r}] cannot be deleted: ctx writes are checkpointed")

    def __iter__(self) -> Iterator[str]:
        yield from self.writes
        yield from (k for k in self._base if k not in self.writes)

    def __len__(self) -> int:
        return len(self.writes) + sum(1 for k in self._base if k not in self.writes)

    def __repr__(self) -> str:
        return f"<Context run={self.run_id!r} step={self.step!r} attempt={self.attempt}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # to a process worker: a copy of what it may read; its writes come back in the result
        # (and the upstream results without their outputs, which steps receive as arguments)
        upstream = {}
        for name, result in self.upstream.items():
            upstream[name] = light = copy.copy(result)
            light.output = None
        return (
            Context,
            (
                self.run_id,
                self.flow,
                self.step,
                self.attempt,
                self.params,
                dict(self._base),
                upstream,
                tuple(upstream),
            ),
        )
