"""Resume decisions: is a step's stored result still valid, and if not, why does it run?

Used by the engine (one step at a time, as its inputs become known) and by the plan (dry-run,
``explain``), which predicts the same decisions from the stored hashes without running anything.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .dsl import Step
from .errors import UnknownStepError
from .fanout import FanOutError, gather_hash, instances
from .graph import FlowGraph, Node
from .keys import canonical, code_hash, digest, step_key
from .result import Status
from .rules import judge

__all__ = ["Decision", "Inputs", "KeyMaker", "Plan", "PlannedStep", "decide", "plan", "select"]

CONDITION_FALSE = "condition false"
INPUT_PREFIX = 8


class Decision(str, Enum):
    CACHED = "cached"
    RUN = "run"
    SKIP = "skip"  # a remembered `when=` decision; in a plan, also a trigger rule's skip
    UPSTREAM_FAILED = "upstream_failed"  # plans only: an upstream is known to fail


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a step's cache key is made of, kept in its journal record for explanations."""

    code: str
    params: tuple[tuple[str, Any], ...]
    data: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]
    key: str
    instance: bool = False  # a fan-out instance (its item or combination is in ``params``)
    #: (run parameter, short hash of its value, whether the value is the function's default)
    param_hashes: tuple[tuple[str, str, bool], ...] = ()

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"key": self.key, "code": self.code}
        if self.data or self.order:
            # short prefixes: enough to name the input that changed (the key covers the rest)
            rec["in"] = {n: h[:INPUT_PREFIX] for n, h in self.data + self.order}
        if self.param_hashes:  # to name the parameter that changed, and how
            rec["p"] = {n: h for n, h, _ in self.param_hashes}
        return rec


class KeyMaker:
    """Computes step inputs; caches code hashes per function for the life of one run."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self._code: dict[Any, str] = {}
        self._param_hash: dict[tuple[str, str | None], tuple[str, str, bool]] = {}

    def code(self, spec: Step) -> str:
        if spec.code_version is not None:
            return "v:" + spec.code_version
        fn = spec.fn
        h = self._code.get(fn)
        if h is None:
            h = self._code[fn] = code_hash(fn)
        return h

    def param_values(self, node: Node) -> tuple[tuple[str, Any], ...]:
        p, d = self.params, node.spec.defaults
        return tuple((k, p[k] if k in p else d[k]) for k in node.run_params)

    def param_hashes(self, node: Node) -> tuple[tuple[str, str, bool], ...]:
        """Each run parameter of ``node``: a short hash of its value, and whether it is the
        function's default (computed once per run and parameter)."""
        out = []
        p, d = self.params, node.spec.defaults
        for k in node.run_params:
            given = k in p
            slot = (k, None if given else node.spec.name)  # defaults differ from step to step
            entry = self._param_hash.get(slot)
            if entry is None:
                value = p[k] if given else d[k]
                entry = self._param_hash[slot] = (k, _short(value), not given)
            out.append(entry)
        return tuple(out)

    def inputs(self, node: Node, hashes: Mapping[str, str], keys: Mapping[str, str]) -> Inputs:
        code = self.code(node.spec)
        params = self.param_values(node)
        ph = self.param_hashes(node) if node.run_params else ()
        data = tuple((d, hashes.get(d, "-")) for d in node.data_deps)
        if node.binding_keys:  # a fan-out instance: its own item instead of the whole input
            bound = {k for k, _ in node.binding_keys}
            data = tuple(x for x in data if x[0] not in bound)
            params += node.binding_keys
        order = tuple((d, keys.get(d, "-")) for d in node.order_deps)
        key = step_key(code, params, data, order)
        return Inputs(code, params, data, order, key, bool(node.binding_keys), ph)


def _short(value: Any) -> str:
    return digest(canonical({"v": value}))[:INPUT_PREFIX]


def decide(
    spec: Step,
    prev: Mapping[str, Any] | None,
    inputs: Inputs,
    *,
    forced: bool,
    now: float | None = None,
) -> tuple[Decision, str]:
    """Reuse the stored result (CACHED), run the step (RUN, with the reason), or SKIP it again."""
    if forced:
        return Decision.RUN, "--rerun"
    if not spec.cache:
        return Decision.RUN, "cache=False"
    if prev is None:
        return Decision.RUN, "new instance" if inputs.instance else "new"
    status = prev.get("status")
    same_key = prev.get("key") == inputs.key
    if status == "skipped":
        if same_key and prev.get("reason") == CONDITION_FALSE:
            return Decision.SKIP, CONDITION_FALSE
        return Decision.RUN, "new"
    if status in ("failed", "timed_out"):
        return Decision.RUN, f"{status.replace('_', ' ')} before"
    if same_key:
        ttl = spec.cache_ttl
        if ttl is not None and (now or time.time()) - float(prev.get("end") or 0) > ttl:
            return Decision.RUN, f"cache expired (cache_ttl={ttl:g}s)"
        return Decision.CACHED, "unchanged"
    return Decision.RUN, changed_reason(prev, inputs)


def changed_reason(prev: Mapping[str, Any], inputs: Inputs) -> str:
    """Name what differs between a stored record and the current inputs.

    A changed default shows as a code change too (the default is in the source): a run
    parameter that took its default, and whose value changed, names it.
    """
    was = prev.get("p")
    moved = (
        [(n, dflt) for n, h, dflt in inputs.param_hashes if was.get(n) != h]
        if isinstance(was, dict)
        else []
    )
    defaults = [n for n, dflt in moved if dflt]
    if defaults:
        return "parameter default changed: " + ", ".join(defaults)
    if prev.get("code") != inputs.code:
        return _code_change(str(prev.get("code") or ""), inputs.code)
    before = prev.get("in") or {}
    changed = [n for n, h in inputs.data + inputs.order if before.get(n) != h[:INPUT_PREFIX]]
    if changed:
        return "input changed: " + ", ".join(changed)
    if moved:
        return "parameter changed: " + ", ".join(n for n, _ in moved)
    if inputs.instance:
        # same name, another item or combination: an old journal's positional instance name
        return "new instance"
    return "parameters changed"


#: ``code_version`` of workflow tasks: "wf|kind:what=hash|...", so a change can be named.
PARTS_PREFIX = "v:wf|"
_PART_NAMES = {"script": "script", "input": "input files", "fn": "function"}


def _code_change(before: str, now: str) -> str:
    """ "code changed", or for a workflow task which script, input files or settings changed."""
    if not (before.startswith(PARTS_PREFIX) and now.startswith(PARTS_PREFIX)):
        return "code changed"
    old = dict(p.rpartition("=")[::2] for p in before[len(PARTS_PREFIX) :].split("|"))
    said = []
    for part in now[len(PARTS_PREFIX) :].split("|"):
        label, _, h = part.rpartition("=")
        if old.get(label) == h:
            continue
        kind, _, what = label.partition(":")
        if kind in _PART_NAMES:
            said.append(f"{_PART_NAMES[kind]} changed: {what}")
        else:
            said.append("task definition changed")
    return "; ".join(said) or "task definition changed"


def select(graph: FlowGraph, patterns: Iterable[str]) -> set[str]:
    """Step names matching names or glob patterns; raises UnknownStepError for a miss."""
    out: set[str] = set()
    for pat in patterns:
        if pat in graph.nodes:
            out.add(pat)
            continue
        hits = fnmatch.filter(graph.nodes, pat)
        if not hits:
            raise UnknownStepError(pat, graph.nodes.keys())
        out.update(hits)
    return out


@dataclass(frozen=True, slots=True)
class PlannedStep:
    name: str
    tier: int
    decision: Decision
    reason: str
    uncertain: bool = False  # depends on an upstream output not known until it runs
    #: a fan-out step's instances, when they are known before the run (each with its verdict)
    instances: tuple[PlannedStep, ...] = ()


@dataclass(slots=True)
class Plan:
    """What a run would do, predicted from stored state; nothing is executed or written."""

    steps: dict[str, PlannedStep] = field(default_factory=dict)
    tiers: list[list[str]] = field(default_factory=list)

    def would_run(self) -> list[str]:
        return [n for n, s in self.steps.items() if s.decision is Decision.RUN]


def plan(
    graph: FlowGraph,
    stored: Mapping[str, Mapping[str, Any]],
    keys: KeyMaker,
    force: set[str],
    is_selected: Callable[[str], bool] = lambda _: True,
    check: Callable[[Mapping[str, Any]], str | None] = lambda _: None,
) -> Plan:
    """Predict each step's decision in topological order (iteratively: deep graphs are fine).

    Trigger rules are applied to the predicted outcomes of the upstreams, through the engine's
    own :func:`~flowkit.rules.judge`: cached steps succeed, remembered ``when=`` skips skip, a
    step known to fail (a fan-out over a stored value that is not a list) fails, and a step that
    would run is assumed to succeed — a verdict resting on that assumption says so.
    """
    result = Plan(tiers=graph.tiers)
    hashes: dict[str, str] = {}
    key_of: dict[str, str] = {}
    reruns: set[str] = set()
    # steps whose cache key the plan cannot know: a data input re-runs (its new output is
    # unknown), or an order-only input's key is unknown; a re-run's key alone is known
    shaky: set[str] = set()
    outcome: dict[str, Status] = {}  # each step's predicted state, for its dependents' rules
    assumed: set[str] = set()  # steps whose predicted state rests on a run succeeding
    tier_of = {n: i for i, tier in enumerate(graph.tiers) for n in tier}
    for name in graph.order:
        node = graph.nodes[name]
        prev = stored.get(name)
        ups = [(u, outcome[u]) for u in node.upstream]
        blocked = judge(node.spec.trigger, ups) if ups else None
        if blocked is not None:
            guesses = [u for u in node.upstream if u in assumed]
            reason = blocked.reason
            if guesses:
                assumed.add(name)
                reason += f", if {', '.join(guesses)} succeed{'s' if len(guesses) == 1 else ''}"
            if blocked.status is Status.UPSTREAM_FAILED:
                decision = Decision.UPSTREAM_FAILED
            else:
                decision = Decision.SKIP
            outcome[name] = blocked.status
            result.steps[name] = PlannedStep(name, tier_of[name], decision, reason, bool(guesses))
            continue
        rerun_ups = [u for u in node.data_deps if u in reruns]
        rerun_ups += [u for u in node.order_deps if u in shaky]
        uncertain = False
        fails = False
        made: tuple[PlannedStep, ...] = ()
        if node.fans_out:
            decision, reason, gathered, fails, made = _plan_fanout(
                node, stored, keys, hashes, key_of, force, check, tier_of[name]
            )
            prev = {"hash": gathered} if gathered is not None else None
            key_of[name] = gathered or "-"
        else:
            inputs = keys.inputs(node, hashes, key_of)
            key_of[name] = inputs.key
            decision, reason = decide(node.spec, prev, inputs, forced=name in force)
            if decision is Decision.CACHED and prev is not None:
                damaged = check(prev)  # the run would find the same and re-run the step
                if damaged is not None:
                    decision, reason = Decision.RUN, damaged
        if rerun_ups and (decision is not Decision.RUN or reason.startswith("input changed")):
            # the upstream's new output is not known yet: say so rather than guess
            decision, uncertain = Decision.RUN, True
            reason = f"upstream re-runs: {', '.join(rerun_ups)}"
        if rerun_ups or (node.fans_out and decision is Decision.RUN):
            shaky.add(name)  # (a fan-out step's key is the hash of its gathered output)
        if decision is Decision.CACHED and prev is not None:
            hashes[name] = str(prev.get("hash", "-"))
        else:
            reruns.add(name)
        if not is_selected(name) and decision is not Decision.CACHED:
            reason = f"not selected; {reason}"
            outcome[name] = Status.SKIPPED
        elif decision is Decision.RUN:
            outcome[name] = Status.FAILED if fails else Status.SUCCEEDED
            if not fails:
                assumed.add(name)
        else:
            outcome[name] = Status.CACHED if decision is Decision.CACHED else Status.SKIPPED
        if made and (uncertain or not is_selected(name)):
            made = ()  # their inputs are not known yet, or they are not run: no verdicts
        result.steps[name] = PlannedStep(name, tier_of[name], decision, reason, uncertain, made)
    return result


def _plan_fanout(
    node: Node,
    stored: Mapping[str, Mapping[str, Any]],
    keys: KeyMaker,
    hashes: Mapping[str, str],
    key_of: Mapping[str, str],
    force: set[str],
    check: Callable[[Mapping[str, Any]], str | None],
    tier: int,
) -> tuple[Decision, str, str | None, bool, tuple[PlannedStep, ...]]:
    """Predict a fan-out step from its instances.

    Returns the decision, its reason, the gathered hash when all instances are cached,
    whether the step is known to fail (what it maps over cannot be expanded), and the
    instances with their own verdicts (none when they are only known at run time).
    """
    spec = node.spec
    mapped = None
    if spec.map_over is not None:
        rec = stored.get(spec.map_over)
        if rec is None or "ref" in rec or spec.map_over not in hashes:
            why = f"instances of {spec.map_over!r} known at run time"
            return Decision.RUN, why, None, False, ()
        mapped = rec.get("out")
    try:
        made = instances(node, mapped)
    except FanOutError as exc:
        return Decision.RUN, f"fails: {exc}", None, True, ()
    todo, gathered, planned = 0, [], []
    for inst in made:
        prev = stored.get(inst.name)
        inputs = keys.inputs(inst, hashes, key_of)
        decision, why = decide(spec, prev, inputs, forced=node.name in force)
        if decision is Decision.CACHED and prev is not None:
            damaged = check(prev)
            if damaged is not None:
                decision, why = Decision.RUN, damaged
        if decision is Decision.CACHED and prev is not None:
            gathered.append(str(prev.get("hash", "-")))
        elif decision is Decision.RUN:
            todo += 1
        planned.append(PlannedStep(inst.name, tier, decision, why))
    if todo:
        why = f"{todo} of {len(made)} instances would run"
        return Decision.RUN, why, None, False, tuple(planned)
    return Decision.CACHED, "unchanged", gather_hash(gathered), False, tuple(planned)
