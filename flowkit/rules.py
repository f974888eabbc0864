"""Trigger rules evaluated: may a step run, given how its upstream steps ended?"""

from __future__ import annotations

from collections.abc import Mapping

from .policy import Trigger
from .result import StepResult

__all__ = ["trigger_blocks"]


def trigger_blocks(
    rule: Trigger, upstream: tuple[str, ...], results: Mapping[str, StepResult]
) -> str | None:
    """Why ``rule`` forbids running given the upstreams' outcomes, or None when it allows it."""
    if not upstream or rule is Trigger.ALWAYS or rule is Trigger.ALL_DONE:
        if rule in (Trigger.ONE_FAILED, Trigger.ALL_FAILED) and not upstream:
            return f"trigger {rule.value}: no upstream step"
        return None
    if rule is Trigger.ALL_SUCCESS:
        for u in upstream:
            st = results[u].status
            if not st.ok:
                return f"upstream {u!r} {'failed' if st.failed else 'was skipped'}"
        return None
    if rule is Trigger.NONE_FAILED:
        for u in upstream:
            if results[u].status.failed:
                return f"upstream {u!r} failed (trigger none_failed)"
        return None
    failed = [u for u in upstream if results[u].status.failed]
    if rule is Trigger.ONE_FAILED:
        return None if failed else "trigger one_failed: no upstream failed"
    # ALL_FAILED
    if len(failed) == len(upstream):
        return None
    ok = next(u for u in upstream if not results[u].status.failed)
    return f"trigger all_failed: upstream {ok!r} did not fail"
