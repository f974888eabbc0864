"""Resume decisions: is a step's stored result still valid, and if not, why does it run?

Used through :func:`flowkit.decide.decide_step` by the engine (one step at a time, as its inputs
become known) and by the plan (:mod:`flowkit.planner`).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .dsl import Step
from .errors import UnknownStepError
from .graph import FlowGraph, Node
from .keys import canonical, code_hash, digest, params_bytes, step_key
from .options import Selection

__all__ = [
    "Decision",
    "Inputs",
    "KeyMaker",
    "Plan",
    "PlannedStep",
    "decide",
    "select",
    "selection_of",
]

CONDITION_FALSE = "condition false"

#: A step's parts of its cache key that do not change during a run: code hash, parameters,
#: their encoding, and each run parameter's (name, short hash, whether it is the default).
_Static = tuple[str, tuple[tuple[str, Any], ...], bytes, tuple[tuple[str, str, bool], ...]]
INPUT_PREFIX = 8


class Decision(str, Enum):
    CACHED = "cached"
    RUN = "run"
    SKIP = "skip"  # a remembered `when=` decision; in a plan, also a trigger rule's skip
    UPSTREAM_FAILED = "upstream_failed"  # plans only: an upstream is known to fail


@dataclass(slots=True)
class Inputs:
    """What a step's cache key is made of, kept in its journal record for explanations.

    Not changed once made (not ``frozen``: a frozen dataclass costs four times as much to make,
    and one is made per step)."""

    code: str
    params: tuple[tuple[str, Any], ...]
    data: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]
    key: str
    instance: bool = False  # a fan-out instance (its item or combination is in ``params``)
    #: (run parameter, short hash of its value, whether the value is the function's default)
    param_hashes: tuple[tuple[str, str, bool], ...] = ()

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {}
        self.add_to(rec)
        return rec

    def add_to(self, rec: dict[str, Any]) -> None:
        """Add the record fields (``key``, ``code``, ``in``, ``p``) to ``rec``."""
        rec["key"] = self.key
        rec["code"] = self.code
        data, order = self.data, self.order
        if data or order:
            # short prefixes: enough to name the input that changed (the key covers the rest)
            rec["in"] = {n: h[:INPUT_PREFIX] for n, h in (data + order if order else data)}
        if self.param_hashes:  # to name the parameter that changed, and how
            rec["p"] = {n: h for n, h, _ in self.param_hashes}


class KeyMaker:
    """Computes step inputs for one run.

    What does not change during a run is computed once per step: its code hash (once per
    function), its parameter values and their encoding. Per decision only the input digests
    are new.
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self._code: dict[Any, str] = {}
        #: per step: its code hash, parameters (with a fan-out instance's binding), their
        #: encoding, and each run parameter's short hash (computed once per run)
        self._static: dict[str, _Static] = {}
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
        if not node.run_params:
            return ()
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

    def _static_part(self, node: Node) -> _Static:
        params = self.param_values(node)
        ph = self.param_hashes(node) if node.run_params else ()
        if node.binding_keys:  # a fan-out instance: its own item instead of the whole input
            params += node.binding_keys
        static = (self.code(node.spec), params, params_bytes(params), ph)
        self._static[node.name] = static
        return static

    def inputs(self, node: Node, hashes: Mapping[str, str], keys: Mapping[str, str]) -> Inputs:
        binding = node.binding_keys
        deps = node.data_deps
        data = tuple([(d, hashes.get(d, "-")) for d in deps]) if deps else ()
        deps = node.order_deps
        order = tuple([(d, keys.get(d, "-")) for d in deps]) if deps else ()
        if not node.run_params and not binding:  # only the code: nothing to keep
            spec = node.spec
            code = self._code.get(spec.fn) if spec.code_version is None else None
            if code is None:
                code = self.code(spec)
            return Inputs(code, (), data, order, step_key(code, (), data, order, b"[]"))
        static = self._static.get(node.name)
        if static is None:
            static = self._static_part(node)
        code, params, encoded, ph = static
        if binding:
            bound = {k for k, _ in binding}
            data = tuple(x for x in data if x[0] not in bound)
        key = step_key(code, params, data, order, encoded)
        return Inputs(code, params, data, order, key, bool(binding), ph)


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


def select(graph: FlowGraph, patterns: Iterable[str], instances: Iterable[str] = ()) -> set[str]:
    """Step names matching names or glob patterns; raises UnknownStepError for a miss.

    ``instances``: fan-out instances that may be selected too (``fetch[north]``, ``fit[c=1]``).
    A pattern that is the exact name of a step or of one of those instances selects it alone,
    brackets and all; only a pattern that names nothing is a glob (where ``[...]`` is a
    character class), matched against the steps and those instances.
    """
    known = list(instances)
    names = [*graph.nodes, *known]
    exact = set(names)
    out: set[str] = set()
    for pat in patterns:
        if pat in exact:
            out.add(pat)
            continue
        hits = fnmatch.filter(names, pat)
        if not hits:
            raise UnknownStepError(pat, [*graph.nodes.keys(), *known])
        out.update(hits)
    return out


def selection_of(
    graph: FlowGraph, rerun: Iterable[str], only: Iterable[str], instances: Iterable[str] = ()
) -> Selection:
    """``--rerun`` / ``--only`` patterns resolved to step names (UnknownStepError for a miss).

    ``--rerun`` may also name fan-out ``instances`` a run's journal knows (``fetch[north]``).
    """
    chosen_rerun = select(graph, rerun, instances)
    steps = chosen_rerun & graph.nodes.keys()
    force = graph.downstream_of(steps) | (chosen_rerun - steps)
    if not only:
        return Selection.of(force, None, None)
    chosen = select(graph, only)
    return Selection.of(force, chosen, graph.upstream_of(chosen))


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
