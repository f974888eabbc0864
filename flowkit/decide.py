"""One pure decision per step: what happens to it, given how its upstreams ended and what the
journal holds.

:func:`decide_step` is the only place that applies ``--only``/``--rerun``, trigger rules,
fail-fast, fan-out, the cache and remembered ``when=`` decisions. The engine calls it when a
step's last upstream finishes; the plan (``--dry-run``, ``explain``) calls it in topological order
over predicted outcomes. So the dry run cannot disagree with a run about a decision: only about
facts it cannot know yet (an output that is computed by the run itself).

The verdicts are small dataclasses, never changed once made (``Run`` and ``Restore``, one per
step, are not ``frozen``, which would make them several times dearer to build). :class:`Run`
with ``conditional`` set still has to evaluate the step's ``when=`` (user code, so not here):
:func:`settle_condition` turns its result into the final verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .dsl import SHARED
from .graph import Node
from .options import Selection
from .result import ErrorInfo, Status, StepResult
from .resume import CONDITION_FALSE, Decision, Inputs, decide
from .rules import trigger_blocks

__all__ = [
    "Expand",
    "Fail",
    "Gather",
    "Restore",
    "Run",
    "Skip",
    "Verdict",
    "decide_step",
    "fail_fast_blocks",
    "restore_failed",
    "restored_reason",
    "settle_condition",
]


@dataclass(slots=True)
class Run:
    """Run the step (``reason``: why; ``conditional``: its ``when=`` decides first)."""

    reason: str
    inputs: Inputs
    conditional: bool = False


@dataclass(slots=True)
class Restore:
    """Reuse the stored result ``record`` (if its output turns out missing, run instead).

    ``shared``: the record comes from the flow's shared cache (another run, or another step with
    the same key), not from this run's journal; ``otherwise``: why the step would run without it.
    """

    record: Mapping[str, Any]
    inputs: Inputs
    shared: bool = False
    otherwise: str = ""


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not run it: ``status`` is ``skipped``, or ``upstream_failed`` when a failure upstream
    is the cause. ``journal``: write a session ``skip`` record; ``remember``: write a ``done``
    record with the step's key, so a resume decides the same (a ``when=`` that was false)."""

    reason: str
    journal: bool = True
    remember: bool = False
    inputs: Inputs | None = None
    status: Status = Status.SKIPPED


@dataclass(frozen=True, slots=True)
class Expand:
    """A fan-out step: make its instances; it is decided again (to gather) when they finish."""


@dataclass(frozen=True, slots=True)
class Gather:
    """A fan-out step whose instances finished: succeed with the outputs of ``instances``, in
    order (``cached``: every one of them was restored)."""

    instances: tuple[str, ...]
    cached: bool
    total: int


@dataclass(frozen=True, slots=True)
class Fail:
    """The step fails without running (its instances failed, its ``when=`` raised)."""

    error: ErrorInfo
    reason: str = ""


Verdict = Run | Restore | Skip | Expand | Gather | Fail


def fail_fast_blocks(node: Node, halted_by: str | None) -> str | None:
    """Why fail-fast keeps ``node`` from starting, or None (its trigger may run after failures)."""
    if halted_by is None or node.spec.trigger.runs_after_failure:
        return None
    return f"fail-fast: step {halted_by!r} failed"


def decide_step(
    node: Node,
    results: Mapping[str, StepResult],
    stored: Mapping[str, Any] | None,
    inputs: Callable[[Node], Inputs],
    selection: Selection,
    *,
    halted_by: str | None = None,
    instances: Sequence[str] | None = None,
    shared: Callable[[Node, Inputs], Mapping[str, Any] | None] | None = None,
) -> Verdict:
    """Decide what happens to ``node`` now that all its upstreams have finished.

    Args:
        node: the step (or fan-out instance).
        results: the outcome of every step decided so far (the upstreams' at least).
        stored: the step's last ``done`` record in the journal, or None.
        inputs: computes the step's cache inputs (called only when the cache is consulted).
        selection: ``--rerun`` / ``--only``, resolved to step names.
        halted_by: the step whose failure stopped the run under fail-fast, if any.
        instances: for a fan-out step being decided again, the names of its instances.
        shared: looks a step's key up in the flow's shared cache (for ``cache="shared"`` steps
            that would run otherwise): a usable record, or None.
    """
    name, spec = node.name, node.spec
    if instances is not None:
        return _gather(instances, results)
    if selection.needed is not None and name not in selection.needed:
        return Skip("not selected (--only)", journal=False)
    blocked = trigger_blocks(spec.trigger, node.upstream, results)
    halted = fail_fast_blocks(node, halted_by)
    # under fail-fast, a step below a failure is upstream_failed like any other; the rest
    # name the failure that stopped the run
    if halted is not None and (blocked is None or blocked.status is not Status.UPSTREAM_FAILED):
        return Skip(halted)
    if blocked is not None:
        return Skip(blocked.reason, status=blocked.status)
    if node.fans_out:
        return Expand()
    key = inputs(node)
    decision, reason = decide(spec, stored, key, forced=name in selection.force)
    if decision is Decision.CACHED and stored is not None:
        return Restore(stored, key)
    if decision is Decision.SKIP:
        return Skip(CONDITION_FALSE, journal=False)
    if shared is not None and spec.cache == SHARED and name not in selection.force:
        hit = shared(node, key)
        if hit is not None and decide(spec, hit, key, forced=False)[0] is Decision.CACHED:
            return Restore(hit, key, shared=True, otherwise=reason)
    if selection.only is not None and name not in selection.only:
        return Skip(f"not selected (--only); it would run: {reason}", journal=False)
    return Run(reason, key, conditional=spec.when is not None)


def restore_failed(node: Node, verdict: Restore, why: str, selection: Selection) -> Verdict:
    """The verdict when a :class:`Restore` finds the stored output missing or damaged (``why``):
    the step runs, as any step whose stored result is unusable (a shared cache entry that cannot
    be used is a miss: the step runs for the reason it had without it)."""
    if verdict.shared:
        why = verdict.otherwise or why
    if selection.only is not None and node.name not in selection.only:
        return Skip(f"not selected (--only); it would run: {why}", journal=False)
    return Run(why, verdict.inputs, conditional=node.spec.when is not None)


def restored_reason(record: Mapping[str, Any]) -> str:
    """Why a step is cached: ``unchanged``, or the run and step its shared result came from."""
    source = record.get("from")
    if isinstance(source, Mapping):
        return f"same key as step {source.get('step')!r} in run {source.get('run')} (shared cache)"
    return "unchanged"


def settle_condition(verdict: Run, outcome: bool | BaseException) -> Verdict:
    """The verdict once a conditional step's ``when=`` returned ``outcome`` (or raised it)."""
    if isinstance(outcome, BaseException):
        return Fail(ErrorInfo.of(outcome), reason="when= condition raised")
    if not outcome:
        return Skip(CONDITION_FALSE, remember=True, inputs=verdict.inputs)
    return Run(verdict.reason, verdict.inputs)


def _gather(names: Sequence[str], results: Mapping[str, StepResult]) -> Verdict:
    failed = [n for n in names if results[n].status.failed]
    if failed:
        shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
        msg = f"{len(failed)} of {len(names)} instances failed: {shown}"
        return Fail(ErrorInfo("FanOutError", msg))
    for n in names:
        r = results[n]
        if r.status is Status.UPSTREAM_FAILED or (
            r.status is Status.SKIPPED and r.reason != CONDITION_FALSE
        ):
            return Skip(f"instance {n!r} {r.status.value}: {r.reason}", status=r.status)
    done = tuple(n for n in names if results[n].status.ok)  # `when=`-skipped ones are left out
    cached = all(results[n].status is Status.CACHED for n in done)
    return Gather(done, cached, len(names))
