"""Trigger rules evaluated: may a step run, given how its upstream steps ended?

The verdicts are Airflow's (``airflow/ti_deps/deps/trigger_rule_dep.py``): when a rule does not
hold, the step is ``upstream_failed`` if a failure upstream is why (``all_success``,
``none_failed``, ``none_failed_min_one_success``, and ``one_success`` when nothing succeeded and
not everything was skipped), else ``skipped``. ``cached`` counts as a success; ``failed``,
``timed_out`` and ``upstream_failed`` count as failures, except for ``one_done``, which counts
only steps that ran (succeeded or failed), as Airflow does.

The engine and the dry run (:func:`flowkit.planner.plan`) both decide through :func:`judge`, so
the plan predicts what the run does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .policy import Trigger
from .result import Status, StepResult

__all__ = ["Blocked", "judge", "trigger_blocks"]

_FAILURES = frozenset((Status.FAILED, Status.TIMED_OUT, Status.UPSTREAM_FAILED))


@dataclass(frozen=True, slots=True)
class Blocked:
    """A rule's refusal: the state the step is recorded in and why."""

    status: Status  # SKIPPED or UPSTREAM_FAILED
    reason: str


_SUCCEEDED, _CACHED = Status.SUCCEEDED, Status.CACHED


def trigger_blocks(
    rule: Trigger, upstream: tuple[str, ...], results: Mapping[str, StepResult]
) -> Blocked | None:
    """Why ``rule`` forbids running given the upstreams' results, or None when it allows it."""
    if rule is Trigger.ALL_SUCCESS:  # the default, on every step: settle the common case fast
        for u in upstream:
            st = results[u].status
            if st is not _SUCCEEDED and st is not _CACHED:  # Status.ok, without its lookups
                break
        else:
            return None
    elif rule is Trigger.ALWAYS:
        return None
    return judge(rule, [(u, results[u].status) for u in upstream])


def judge(rule: Trigger, upstream: Sequence[tuple[str, Status]]) -> Blocked | None:
    """Apply ``rule`` to the finished upstreams' ``(name, status)``: None means run.

    A step without upstreams runs whatever its rule (as in Airflow).
    """
    if not upstream or rule is Trigger.ALWAYS or rule is Trigger.ALL_DONE:
        return None
    failed = [u for u, st in upstream if st in _FAILURES]
    skipped = [u for u, st in upstream if st is Status.SKIPPED]
    succeeded = [u for u, st in upstream if st.ok]
    name = rule.value
    if rule is Trigger.ALL_SUCCESS:
        if failed:
            return _upstream_failed(failed[0], upstream)
        if skipped:
            return Blocked(Status.SKIPPED, f"upstream {skipped[0]!r} was skipped")
        return None
    if rule is Trigger.NONE_FAILED or rule is Trigger.NONE_FAILED_MIN_ONE_SUCCESS:
        if failed:
            return _upstream_failed(failed[0], upstream, f" (trigger {name})")
        if rule is Trigger.NONE_FAILED_MIN_ONE_SUCCESS and not succeeded:
            return Blocked(Status.SKIPPED, f"trigger {name}: every upstream was skipped")
        return None
    if rule is Trigger.ONE_SUCCESS:
        if succeeded:
            return None
        if len(skipped) == len(upstream):
            return Blocked(Status.SKIPPED, f"trigger {name}: every upstream was skipped")
        return Blocked(Status.UPSTREAM_FAILED, f"trigger {name}: no upstream succeeded")
    if rule is Trigger.ONE_FAILED:
        return None if failed else Blocked(Status.SKIPPED, f"trigger {name}: no upstream failed")
    if rule is Trigger.ONE_DONE:
        ran = any(st.ok or st.failed for _, st in upstream)
        if ran:
            return None
        return Blocked(Status.SKIPPED, f"trigger {name}: no upstream succeeded or failed")
    if rule is Trigger.ALL_FAILED:
        if len(failed) == len(upstream):
            return None
        ok = next(u for u, st in upstream if st not in _FAILURES)
        return Blocked(Status.SKIPPED, f"trigger {name}: upstream {ok!r} did not fail")
    if rule is Trigger.NONE_SKIPPED:
        if not skipped:
            return None
        return Blocked(Status.SKIPPED, f"trigger {name}: upstream {skipped[0]!r} was skipped")
    # ALL_SKIPPED
    if len(skipped) == len(upstream):
        return None
    other = next(u for u, st in upstream if st is not Status.SKIPPED)
    return Blocked(Status.SKIPPED, f"trigger {name}: upstream {other!r} was not skipped")


def _upstream_failed(
    name: str, upstream: Sequence[tuple[str, Status]], suffix: str = ""
) -> Blocked:
    status = dict(upstream)[name]
    how = {
        Status.FAILED: "failed",
        Status.TIMED_OUT: "timed out",
        Status.UPSTREAM_FAILED: "did not run: upstream_failed",
    }[status]
    return Blocked(Status.UPSTREAM_FAILED, f"upstream {name!r} {how}{suffix}")
