"""The ready set: which steps can be decided, and which are waiting to be submitted.

Shaped like :class:`graphlib.TopologicalSorter`: a count of unfinished predecessors per step,
so :meth:`ReadySet.done` costs O(successors) and nothing ever rescans the graph. It is pure
bookkeeping: no clock, no I/O, no knowledge of how a step runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["ReadySet", "Successors"]


class ReadySet:
    """Predecessor counts over a DAG, plus the queue of steps decided to run.

    Args:
        upstream_counts: for every step, how many predecessors it waits for.
        downstream: for every step, its successors (a mapping read when a step is done; it may
            grow as fan-out instances are added, see :meth:`expand`).
    """

    __slots__ = ("_decidable", "_downstream", "_queued", "_remaining")

    def __init__(
        self, upstream_counts: Mapping[str, int], downstream: Mapping[str, Sequence[str]]
    ) -> None:
        self._remaining = dict(upstream_counts)
        self._downstream = downstream
        self._decidable: deque[str] = deque(n for n, c in self._remaining.items() if c == 0)
        self._queued: deque[str] = deque()

    def take_decidable(self) -> str | None:
        """The next step whose last predecessor finished (oldest first), or None."""
        return self._decidable.popleft() if self._decidable else None

    def has_decidable(self) -> bool:
        """Whether a step is waiting to be decided."""
        return bool(self._decidable)

    def done(self, name: str, successors: Sequence[str] | None = None) -> None:
        """``name`` finished (any outcome): its successors have one predecessor fewer (the
        caller may pass them, when it holds them, to save a lookup)."""
        remaining = self._remaining
        for succ in self._downstream[name] if successors is None else successors:
            left = remaining[succ] - 1
            remaining[succ] = left
            if left == 0:
                self._decidable.append(succ)

    def expand(self, parent: str, instances: Iterable[str]) -> None:
        """``parent`` fans out: its instances are decidable now; it is decided again (to gather
        their results) when all of them are done. With no instances it is decidable at once."""
        made = list(instances)
        self._remaining[parent] = len(made)
        for inst in made:
            self._remaining[inst] = 0
            self._decidable.append(inst)
        if not made:
            self._decidable.append(parent)

    def queue(self, name: str) -> None:
        """``name`` was decided to run: it waits for a free slot."""
        self._queued.append(name)

    def requeue(self, names: Sequence[str]) -> None:
        """Put ``names`` (a due retry, steps a pool gave back) at the front of the queue."""
        self._queued.extendleft(reversed(names))

    def take(self) -> str | None:
        """The next step to submit, or None."""
        return self._queued.popleft() if self._queued else None

    def __bool__(self) -> bool:
        """Whether any step waits to be decided or submitted."""
        return bool(self._decidable or self._queued)

    def queued(self) -> int:
        """How many steps wait for a free slot."""
        return len(self._queued)


class _HasDownstream(Protocol):
    @property
    def downstream(self) -> tuple[str, ...]: ...


class Successors(Mapping[str, tuple[str, ...]]):
    """The successors of each step, read from a (growing) table of nodes: the ``downstream``
    of a :class:`ReadySet` whose steps are the engine's nodes."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, Any]) -> None:
        self._nodes: Mapping[str, _HasDownstream] = nodes

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._nodes[name].downstream

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)
