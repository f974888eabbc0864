"""Every time-based event of a run: retry delays, step deadlines, the run deadline, the grace
period after a stop request.

Pure bookkeeping over times given by the caller (no clock read here, no sleeping), so the engine
can be driven by an injected clock. Retries and deadlines are heaps: the next one is O(1) to see
and O(log n) to take.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

__all__ = ["Timers"]

T = TypeVar("T")


class Timers(Generic[T]):
    """Retry delays, step deadlines (each holding a token ``T``: the attempt's handle), the run
    deadline and the grace period of a stop.

    Args:
        run_deadline: when the whole run times out (clock time), or None.
    """

    __slots__ = ("_deadlines", "_retries", "_seq", "run_deadline", "stop_by")

    def __init__(self, run_deadline: float | None = None) -> None:
        self._retries: list[tuple[float, int, str]] = []
        self._deadlines: list[tuple[float, int, str, T]] = []
        self._seq = 0
        self.run_deadline = run_deadline
        #: when running attempts are stopped after a stop request (None: no stop requested)
        self.stop_by: float | None = None

    def retry(self, name: str, at: float) -> None:
        """Attempt ``name`` again at time ``at``."""
        self._seq += 1
        heapq.heappush(self._retries, (at, self._seq, name))

    def deadline(self, name: str, at: float, token: T) -> None:
        """The attempt ``token`` of ``name`` must have finished by time ``at``."""
        self._seq += 1
        heapq.heappush(self._deadlines, (at, self._seq, name, token))

    def stop(self, at: float) -> None:
        """A stop was requested: running attempts are stopped at time ``at`` (the grace's end)."""
        if self.stop_by is None:
            self.stop_by = at

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self.stop_by is not None

    def retries_pending(self) -> bool:
        """Whether a retry is waiting for its delay."""
        return bool(self._retries)

    def next_retry(self) -> float | None:
        """When the next retry is due, or None."""
        return self._retries[0][0] if self._retries else None

    def next_wakeup(self, now: float) -> float | None:
        """Seconds from ``now`` until the next timer fires (0 if one is overdue), or None."""
        times = []
        if self._retries:
            times.append(self._retries[0][0])
        if self._deadlines:
            times.append(self._deadlines[0][0])
        if self.stop_by is not None:
            times.append(self.stop_by)
        elif self.run_deadline is not None:
            times.append(self.run_deadline)
        return max(0.0, min(times) - now) if times else None

    def idle(self) -> bool:
        """True when nothing can fire: the loop need not read the clock."""
        return not (self._deadlines or self.run_deadline is not None or self.stop_by is not None)

    def due(self, now: float) -> list[str]:
        """Take the retries whose delay has passed, in the order they fell due."""
        out: list[str] = []
        retries = self._retries
        while retries and retries[0][0] <= now:
            out.append(heapq.heappop(retries)[2])
        return out

    def expired(self, now: float) -> list[tuple[str, T]]:
        """Take the step deadlines that have passed (the caller skips attempts already over)."""
        out: list[tuple[str, T]] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, name, token = heapq.heappop(deadlines)
            out.append((name, token))
        return out

    def run_expired(self, now: float) -> bool:
        """Whether the run deadline has passed (and no stop was requested yet)."""
        return self.stop_by is None and self.run_deadline is not None and now >= self.run_deadline

    def grace_over(self, now: float) -> bool:
        """Whether a stop was requested and its grace period has ended."""
        return self.stop_by is not None and now >= self.stop_by

    def drop_retries(self) -> None:
        """Forget waiting retries (the run is stopping)."""
        self._retries.clear()
