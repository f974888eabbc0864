"""The dry run: what a run would do, predicted from the journal without running anything.

A loop over :func:`~flowkit.decide.decide_step` in topological order, the function the engine
calls for each step, fed with predicted outcomes: cached steps succeed, remembered ``when=``
skips skip, a step known to fail (a fan-out over a stored value that is not a list) fails, and a
step that would run is assumed to succeed. A verdict that rests on that assumption says so, and
so does one that needs an output the run has not computed yet (both are marked ``uncertain``).
A fan-out step whose instances are known before the run lists each with its own verdict.
Used by ``--dry-run``, ``explain`` and ``--only``'s upstream check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .decide import (
    Expand,
    Fail,
    Gather,
    Restore,
    Run,
    Skip,
    Verdict,
    decide_step,
    restore_failed,
    restored_reason,
)
from .errors import UsageError
from .fanout import FanOutError, gather_hash, instances
from .graph import FlowGraph, Node
from .options import Selection
from .result import ErrorInfo, Status, StepResult
from .resume import CONDITION_FALSE, Decision, Inputs, KeyMaker, Plan, PlannedStep

__all__ = ["check_only", "plan"]

Check = Callable[[Mapping[str, Any]], str | None]
Shared = Callable[[Node, Inputs], Mapping[str, Any] | None]


class _Walk:
    """The state of one prediction: outcomes, output hashes and keys known so far."""

    def __init__(
        self,
        stored: Mapping[str, Mapping[str, Any]],
        keys: KeyMaker,
        selection: Selection,
        check: Check,
        shared: Shared | None = None,
    ) -> None:
        self.stored, self.keys, self.selection, self.check = stored, keys, selection, check
        self.shared = shared
        self.results: dict[str, StepResult] = {}
        self.hashes: dict[str, str] = {}
        self.key_of: dict[str, str] = {}
        self.reruns: set[str] = set()
        self.assumed: set[str] = set()  # steps whose predicted state rests on a run succeeding
        # steps whose cache key the plan cannot know: a data input re-runs (its new output is
        # unknown), or an order-only input's key is unknown; a re-run's key alone is known
        self.shaky: set[str] = set()
        #: a fan-out step's instances known before the run: (name, decision, reason) each
        self.made: dict[str, list[tuple[str, Decision, str]]] = {}

    def inputs(self, node: Node) -> Inputs:
        inputs = self.keys.inputs(node, self.hashes, self.key_of)
        self.key_of[node.name] = inputs.key
        return inputs

    def verdict(self, node: Node, instances: list[str] | None = None) -> Verdict:
        name = node.name
        verdict = decide_step(
            node,
            self.results,
            self.stored.get(name),
            self.inputs,
            self.selection,
            instances=instances,
            shared=self.shared,
        )
        if isinstance(verdict, Restore):
            damaged = self.check(verdict.record)  # the run would find the same and re-run it
            if damaged is not None:
                verdict = restore_failed(node, verdict, damaged, self.selection)
        return verdict

    def settle(self, node: Node, verdict: Verdict) -> tuple[Decision, str, bool]:
        """Record the predicted outcome of ``verdict``; returns the plan's decision, its reason,
        and whether it rests on a guess."""
        name = node.name
        r = self.results[name] = StepResult(name)
        if isinstance(verdict, Restore):
            r.status, r.reason = Status.CACHED, restored_reason(verdict.record)
            self.hashes[name] = str(verdict.record.get("hash", "-"))
            return Decision.CACHED, r.reason, False
        if isinstance(verdict, Skip):
            r.status, r.reason = verdict.status, verdict.reason
            decision = Decision.SKIP
            if verdict.status is Status.UPSTREAM_FAILED:
                decision = Decision.UPSTREAM_FAILED
            guesses = [u for u in node.upstream if u in self.assumed] if verdict.journal else []
            if not guesses:
                return decision, verdict.reason, False
            self.assumed.add(name)
            verb = "succeeds" if len(guesses) == 1 else "succeed"
            return decision, f"{verdict.reason}, if {', '.join(guesses)} {verb}", True
        if isinstance(verdict, Gather) and verdict.cached:
            r.status = Status.CACHED
            self.hashes[name] = gather_hash([self.hashes[n] for n in verdict.instances])
            self.key_of[name] = self.hashes[name]
            return Decision.CACHED, "unchanged", False
        self.reruns.add(name)  # it would run: its output is not known before it does
        if isinstance(verdict, Fail):
            r.status = Status.FAILED
            return Decision.RUN, f"fails: {verdict.error.message}", False
        r.status = Status.SUCCEEDED  # assumed
        self.assumed.add(name)
        if isinstance(verdict, Run):
            return Decision.RUN, verdict.reason, False
        assert isinstance(verdict, Gather)
        todo = sum(1 for n in verdict.instances if n in self.reruns)
        return Decision.RUN, f"{todo} of {verdict.total} instances would run", False

    def fan_out(self, node: Node) -> Verdict:
        """Predict a fan-out step from its instances (when they can be known before running)."""
        spec = node.spec
        mapped = None
        if spec.map_over is not None:
            rec = self.stored.get(spec.map_over)
            known = self.results.get(spec.map_over)
            stored_file = rec is not None and ("ref" in rec or "obj" in rec)
            if rec is None or stored_file or known is None or known.status is not Status.CACHED:
                return Run(f"instances of {spec.map_over!r} known at run time", _NO_INPUTS)
            mapped = rec.get("out")
        try:
            made = instances(node, mapped)
        except FanOutError as exc:
            return Fail(ErrorInfo.of(exc))
        planned = self.made[node.name] = []
        for inst in made:
            decision, why, _ = self.settle(inst, self.verdict(inst))
            planned.append((inst.name, decision, why))
        return self.verdict(node, [i.name for i in made])


_NO_INPUTS = Inputs("-", (), (), (), "-")


def plan(
    graph: FlowGraph,
    stored: Mapping[str, Mapping[str, Any]],
    keys: KeyMaker,
    selection: Selection,
    check: Check = lambda _: None,
    shared: Shared | None = None,
) -> Plan:
    """Predict each step's decision in topological order (iteratively: deep graphs are fine).

    Args:
        graph: the flow's graph.
        stored: the last ``done`` record of each step in the journal.
        keys: computes cache keys with the run's parameters.
        selection: ``--rerun`` / ``--only`` resolved against ``graph``.
        check: says why a stored record's side files are unusable (None when they are fine).
        shared: looks a key up in the flow's shared cache (see ``decide_step``).
    """
    result = Plan(tiers=graph.tiers)
    walk = _Walk(stored, keys, selection, check, shared)
    tier_of = {n: i for i, tier in enumerate(graph.tiers) for n in tier}
    for name in graph.order:
        node = graph.nodes[name]
        verdict = walk.verdict(node)
        if isinstance(verdict, Expand):
            verdict = walk.fan_out(node)
        # a data upstream that re-runs passes an output not known yet; an order-only upstream
        # passes its cache key, which is known, unless it rests on such an output itself
        rerun_ups = [u for u in node.data_deps if u in walk.reruns]
        rerun_ups += [u for u in node.order_deps if u in walk.shaky]
        decision, reason, uncertain = walk.settle(node, verdict)
        # its key is unknown if it was computed from an unknown input (a step skipped before its
        # cache is consulted has none, in the plan as in the run); a fan-out step's key is the
        # hash of its gathered output
        if (rerun_ups and name in walk.key_of) or (node.fans_out and decision is Decision.RUN):
            walk.shaky.add(name)
        if rerun_ups and _depends_on_new_outputs(decision, reason):
            # the upstream's new output is not known yet: say so rather than guess
            decision, uncertain = Decision.RUN, True
            reason = f"upstream re-runs: {', '.join(rerun_ups)}"
            walk.results[name].status = Status.SUCCEEDED
            walk.reruns.add(name)
            walk.assumed.add(name)
        made: tuple[PlannedStep, ...] = ()
        listed = walk.made.pop(name, None)
        unselected = selection.only is not None and name not in selection.only
        if listed and not uncertain and not unselected:
            # (otherwise their inputs are not known yet, or they are not run: no verdicts)
            made = tuple(PlannedStep(n, tier_of[name], d, why) for n, d, why in listed)
        result.steps[name] = PlannedStep(name, tier_of[name], decision, reason, uncertain, made)
    return result


def _depends_on_new_outputs(decision: Decision, reason: str) -> bool:
    """Whether a decision hinges on upstream outputs the run has not computed yet."""
    if decision is Decision.CACHED:
        return True
    if decision is Decision.SKIP:
        return reason == CONDITION_FALSE
    return reason.startswith("input changed")


def check_only(planned: Plan, g: FlowGraph, chosen: set[str], run_id: str) -> None:
    """``--only`` runs ``chosen`` alone: raise UsageError unless each of their upstreams has a
    usable stored result in ``planned`` (the plan of that run)."""
    for name in sorted(g.upstream_of(chosen) - chosen):
        step = planned.steps[name]
        if step.decision is not Decision.CACHED:
            raise UsageError(
                f"--only {', '.join(sorted(chosen))}: upstream step {name!r} has no usable "
                f"stored result in run {run_id!r} ({step.reason}). Run it first, or add it "
                "to --only."
            )
