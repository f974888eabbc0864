"""Admission control: pools (``Flow(pools=...)``) and CPU/memory hints (``@step(cpus=, memory=)``).

A step that does not fit waits in a queue of its own pool (or of the machine's resources) and is
handed back to the scheduler when a step holding what it needs finishes: no rescans of all
waiting steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from .dsl import Step

__all__ = ["Limits"]


class Limits:
    """Tracks what running steps hold; says whether another step may start."""

    def __init__(self, pools: Mapping[str, int], cpus: float, memory: int) -> None:
        self.size = dict(pools)
        self.used = dict.fromkeys(pools, 0)
        self.cpus, self.memory = cpus, memory
        self.cpus_used, self.memory_used = 0.0, 0
        self.waiting: dict[str | None, deque[str]] = {}

    def admit(self, name: str, spec: Step) -> bool:
        """Take what ``spec`` needs and return True, or queue ``name`` and return False."""
        pool = spec.pool
        if pool is not None and self.used[pool] >= self.size[pool]:
            self.waiting.setdefault(pool, deque()).append(name)
            return False
        cpus, mem = spec.cpus or 0.0, spec.memory or 0
        if (cpus and self.cpus_used + cpus > self.cpus) or (
            mem and self.memory_used + mem > self.memory
        ):
            self.waiting.setdefault(None, deque()).append(name)
            return False
        if pool is not None:
            self.used[pool] += 1
        self.cpus_used += cpus
        self.memory_used += mem
        return True

    def release(self, spec: Step) -> list[str]:
        """Give back what ``spec`` held; returns the waiting steps that may now be retried."""
        woken: list[str] = []
        pool = spec.pool
        if pool is not None:
            self.used[pool] -= 1
            queue = self.waiting.get(pool)
            if queue:
                woken.append(queue.popleft())
        if spec.cpus or spec.memory:
            self.cpus_used -= spec.cpus or 0.0
            self.memory_used -= spec.memory or 0
            queue = self.waiting.get(None)
            if queue:
                woken.extend(queue)
                queue.clear()
        return woken
