"""Retry, backoff and trigger policies: small frozen values with pure methods.

Nothing here sleeps or reads a clock; the engine owns time, so tests can drive it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Backoff", "RetryPolicy", "Trigger", "backoff_of"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``n`` (1-based): ``min(max, initial * factor**(n-1))``, +/- jitter.

    ``factor=1`` gives a fixed delay. ``jitter=0.1`` spreads each delay uniformly by +/-10 %,
    drawn from the ``rng`` handed to :meth:`delay` (seed it to get exact delays in tests).
    """

    initial: float = 1.0
    factor: float = 2.0
    max: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < 0:
            raise ValueError(
                f"backoff delays must be >= 0, got initial={self.initial}, max={self.max}"
            )
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def fixed(cls, seconds: float) -> Backoff:
        """The same delay before every retry."""
        return cls(initial=seconds, factor=1.0, max=seconds)

    @classmethod
    def exponential(cls, initial: float = 1.0, factor: float = 2.0, max: float = 60.0) -> Backoff:
        """Delays that grow by ``factor`` each retry, capped at ``max``."""
        return cls(initial=initial, factor=factor, max=max)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        base = min(self.max, self.initial * self.factor ** (retry - 1))
        if self.jitter and base:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)


def backoff_of(value: float | Backoff | str | None) -> Backoff:
    """Normalise the ``backoff=`` shorthand of ``@step``.

    A number is a fixed delay; ``"exponential"`` is :meth:`Backoff.exponential` with its defaults;
    ``None`` is no delay.
    """
    if value is None:
        return Backoff.fixed(0.0)
    if isinstance(value, Backoff):
        return value
    if isinstance(value, str):
        if value == "exponential":
            return Backoff.exponential()
        if value == "fixed":
            return Backoff.fixed(1.0)
        raise ValueError(
            f"backoff must be a number, a Backoff, 'fixed' or 'exponential'; got {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"backoff must be a number, a Backoff, 'fixed' or 'exponential'; got {value!r}"
        )
    return Backoff.fixed(float(value))


ExcTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed step is tried again, and after how long.

    ``retries`` counts attempts after the first. An exception is retried when it is an instance of
    ``retry_on``, not of ``giveup_on``, and ``retry_if(exc)`` (when given) is true.
    """

    retries: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff.fixed(0.0))
    retry_on: ExcTypes = (Exception,)
    giveup_on: ExcTypes = ()
    retry_if: Callable[[BaseException], bool] | None = None

    def should_retry(self, attempts: int, exc: BaseException) -> bool:
        """Whether attempt number ``attempts`` (just failed with ``exc``) gets another try."""
        if attempts > self.retries:
            return False
        if not isinstance(exc, self.retry_on) or isinstance(exc, self.giveup_on):
            return False
        return self.retry_if is None or bool(self.retry_if(exc))

    def next_delay(
        self, attempts: int, exc: BaseException, rng: random.Random | None = None
    ) -> float | None:
        """Seconds before the next attempt, or None to give up."""
        if not self.should_retry(attempts, exc):
            return None
        return self.backoff.delay(attempts, rng)


class Trigger(str, Enum):
    """When a step runs, given how its upstream steps ended: Airflow's trigger rules, same names.

    "Failed" means ``failed``, ``timed_out`` or ``upstream_failed``; "succeeded" includes
    ``cached``; "skipped" is ``skipped`` (by a ``when=`` condition, a rule or fail-fast).

    ``all_success``  every upstream succeeded — the default
    ``all_failed``   every upstream failed
    ``all_done``     every upstream finished, whatever the outcome
    ``all_skipped``  every upstream was skipped
    ``one_success``  at least one upstream succeeded
    ``one_failed``   at least one upstream failed (alerts, cleanup)
    ``one_done``     at least one upstream succeeded or failed itself (not ``upstream_failed``)
    ``none_failed``  no upstream failed: each succeeded or was skipped
    ``none_failed_min_one_success``  no upstream failed, and at least one succeeded
    ``none_skipped`` no upstream was skipped
    ``always``       runs whatever happened upstream, even after fail-fast stopped the run

    A rule is checked once every upstream has finished. When it does not hold, the step is
    recorded ``upstream_failed`` if an upstream failure is the cause (``all_success``,
    ``none_failed``, ``none_failed_min_one_success``, ``one_success``), else ``skipped``.
    """

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"

    @property
    def runs_after_failure(self) -> bool:
        """True when this rule exists to react to failures, so fail-fast does not stop it."""
        return self in _AFTER_FAILURE


_AFTER_FAILURE = frozenset(
    (Trigger.ALL_DONE, Trigger.ONE_FAILED, Trigger.ALL_FAILED, Trigger.ONE_DONE, Trigger.ALWAYS)
)
