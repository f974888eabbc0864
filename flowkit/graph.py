"""The dependency graph of a flow: its validation and its tiers (and, on demand, a networkx
DiGraph of it).

An edge ``u -> v`` means "v depends on u". A dependency is a *data* dependency when v has a
parameter named u (it receives u's output), an *order* dependency when it only comes from
``depends_on``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .dsl import Step
from .errors import (
    CycleError,
    FlowDefinitionError,
    FlowProblemsError,
    UnboundParameterError,
    UnknownDependencyError,
    UnknownParameterError,
    suggest,
)
from .gcpause import gc_paused

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["FlowGraph", "GraphShape", "Node"]


@dataclass(slots=True, unsafe_hash=True)
class Node:
    """A step placed in its flow: what it receives and from where (never changed once made:
    not ``frozen``, which would make building a large graph much slower, but hashable).

    Fan-out instances (``matrix=`` / ``map_over=``) are Nodes too, made at run time: ``parent``
    is the step they belong to, ``bindings`` the parameter values of this instance (a matrix
    combination, or one item of the mapped output) and ``binding_keys`` how the cache key sees them.
    """

    spec: Step
    data_deps: tuple[str, ...]
    order_deps: tuple[str, ...]
    run_params: tuple[str, ...]
    downstream: tuple[str, ...]
    instance: str | None = None
    bindings: tuple[tuple[str, Any], ...] = ()
    binding_keys: tuple[tuple[str, str], ...] = ()
    #: ``instance`` or the step's name; and the data then order dependencies: read on every
    #: decision, so they are kept rather than derived each time
    name: str = field(init=False, repr=False, compare=False)
    upstream: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.name = self.instance or self.spec.name
        self.upstream = self.data_deps + self.order_deps

    @property
    def fans_out(self) -> bool:
        """A step that runs as several instances (and gathers their results)."""
        return self.instance is None and bool(self.spec.matrix or self.spec.map_over)


_GLOB = frozenset("*?[")


def _expand_globs(
    name: str,
    deps: tuple[str, ...],
    steps: Mapping[str, Step],
    problems: list[FlowDefinitionError],
) -> tuple[str, ...]:
    """``depends_on`` with its glob patterns (``fetch_*``) replaced by the steps they match
    (the step itself left out), as ``--rerun`` matches them.

    A name that is not a step, or a pattern that matches none, is left out and added to
    ``problems`` (an :class:`UnknownDependencyError`).
    """
    out: dict[str, None] = {}
    for dep in deps:
        if dep in steps:
            out[dep] = None
            continue
        hits = []
        if _GLOB & set(dep):
            hits = sorted(s for s in fnmatch.filter(steps, dep) if s != name)
        if not hits:
            problems.append(UnknownDependencyError(name, dep, [s for s in steps if s != name]))
            continue
        out.update(dict.fromkeys(hits))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class GraphShape:
    """What a report or a dashboard needs of a graph: its steps by tier and their dependencies.

    It is saved with each run (``graph.json``), so the run can be shown without the flow's code.
    """

    flow: str
    tiers: tuple[tuple[str, ...], ...]
    deps: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]  # step -> (data deps, order deps)
    tier: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tier = {n: i for i, names in enumerate(self.tiers) for n in names}
        object.__setattr__(self, "tier", tier)

    def tier_of(self, name: str) -> int:
        """The tier of a step (0: no dependencies). Raises KeyError for an unknown step."""
        return self.tier[name]

    @property
    def order(self) -> list[str]:
        """Every step, tier by tier."""
        return [n for tier in self.tiers for n in tier]

    def to_json(self) -> dict[str, Any]:
        """JSON: ``{"flow": name, "tiers": [[step, ...], ...], "data": {step: [dep, ...]},
        "order": {step: [dep, ...]}}`` (steps without dependencies left out of the last two)."""
        return {
            "flow": self.flow,
            "tiers": self.tiers,
            "data": {n: d for n, (d, _) in self.deps.items() if d},
            "order": {n: o for n, (_, o) in self.deps.items() if o},
        }

    @classmethod
    def from_json(cls, data: Any) -> GraphShape:
        """Read what :meth:`to_json` wrote. Raises ValueError when the data has another shape."""
        try:
            flow = str(data["flow"])
            tiers = tuple(tuple(str(n) for n in tier) for tier in data["tiers"])
            data_deps, order_deps = data.get("data") or {}, data.get("order") or {}
            deps = {
                n: (
                    tuple(map(str, data_deps.get(n, ()))),
                    tuple(map(str, order_deps.get(n, ()))),
                )
                for tier in tiers
                for n in tier
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a graph shape ({exc!r})") from None
        return cls(flow, tiers, deps)


class FlowGraph:
    """A validated DAG of steps with a deterministic topological order.

    Raises:
        UnknownDependencyError: a ``depends_on`` name is not a step.
        CycleError: the dependencies form a cycle (the message shows it, with file:line).
    """

    def __init__(
        self,
        flow: str,
        steps: Mapping[str, Step],
        pools: Mapping[str, int] | None = None,
        *,
        lenient: bool = False,
    ) -> None:
        #: What is wrong with the flow (unknown dependencies, undeclared pools). Raised, all
        #: together, unless ``lenient``: then kept here and the graph built without them (to
        #: find what else is wrong).
        self.problems: list[FlowDefinitionError] = []
        with gc_paused():
            self._build(flow, steps, pools)
        if not lenient:
            FlowProblemsError.raise_all(flow, self.problems)

    def _build(self, flow: str, steps: Mapping[str, Step], pools: Mapping[str, int] | None) -> None:
        self.flow = flow
        self.pools = dict(pools or {})
        self._dag: nx.DiGraph[str] | None = None
        partial: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        down: dict[str, list[str]] = {}
        #: unfinished predecessors per step, for the sort (a repeated edge counts each time,
        #: as it appears each time in ``down``)
        waiting: dict[str, int] = {}
        for name, spec in steps.items():
            sp, deps = spec.params, spec.depends_on
            data = tuple([p for p in sp if p in steps and p != name]) if sp else ()
            for dep in deps:
                if dep not in steps:
                    deps = _expand_globs(name, deps, steps, self.problems)
                    break
            if spec.map_over is not None and spec.map_over not in data:
                self.problems.append(UnknownDependencyError(name, spec.map_over, steps.keys()))
            if spec.pool is not None and spec.pool not in self.pools:
                self.problems.append(_pool_problem(spec, self.pools))
            order = tuple([d for d in deps if d not in data and d in steps]) if deps else ()
            if sp:
                axes = {k for k, _ in spec.matrix} if spec.matrix else ()
                params = tuple([p for p in sp if p not in data and p not in axes])
            else:
                params = ()
            partial[name] = (data, order, params)
            waiting[name] = len(data) + len(order)
            for d in data + order:
                if d in down:
                    down[d].append(name)
                else:
                    down[d] = [name]
        # the topological generations (Kahn's algorithm, one pass); steps left waiting are on
        # or below a cycle, which networkx then finds for the message
        self.tiers: list[list[str]] = []
        current = [n for n, w in waiting.items() if w == 0]
        placed = 0
        while current:
            self.tiers.append(sorted(current))
            placed += len(current)
            ready: list[str] = []
            for u in current:
                for v in down.get(u, ()):
                    w = waiting[v] - 1
                    waiting[v] = w
                    if w == 0:
                        ready.append(v)
            current = ready
        if placed < len(steps):
            import networkx as nx

            dag = self._networkx(steps, partial)
            cycle = [u for u, _ in nx.find_cycle(dag)]
            raise CycleError(flow, cycle, [steps[n].location for n in cycle])
        self.order: list[str] = [n for tier in self.tiers for n in tier]
        self.nodes: dict[str, Node] = {}
        for name in self.order:
            data, order, params = partial[name]
            after = down.get(name)
            self.nodes[name] = Node(
                steps[name], data, order, params, tuple(sorted(after)) if after else ()
            )
        self.run_params: frozenset[str] = frozenset(
            p for n in self.nodes.values() for p in n.run_params
        )

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def dag(self) -> nx.DiGraph[str]:
        """The graph as a networkx DiGraph (an edge ``u -> v``: v depends on u), built on first
        use: a run needs only the tiers and each step's dependencies."""
        if self._dag is None:
            deps = {n: (v.data_deps, v.order_deps, v.run_params) for n, v in self.nodes.items()}
            self._dag = self._networkx({n: v.spec for n, v in self.nodes.items()}, deps)
        return self._dag

    @staticmethod
    def _networkx(
        steps: Mapping[str, Step],
        deps: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
    ) -> nx.DiGraph[str]:
        import networkx as nx

        dag: nx.DiGraph[str] = nx.DiGraph()
        dag.add_nodes_from(steps)
        dag.add_edges_from((d, n) for n, (data, order, _) in deps.items() for d in data + order)
        return dag

    def shape(self) -> GraphShape:
        """The steps by tier and their dependencies, without the code (see :class:`GraphShape`)."""
        nodes = self.nodes
        deps = {n: (nodes[n].data_deps, nodes[n].order_deps) for n in self.order}
        return GraphShape(self.flow, tuple(tuple(t) for t in self.tiers), deps)

    def shape_json(self) -> dict[str, Any]:
        """``self.shape().to_json()``, built directly (once per run: it must stay cheap)."""
        nodes = self.nodes
        return {
            "flow": self.flow,
            "tiers": self.tiers,
            "data": {n: v.data_deps for n, v in nodes.items() if v.data_deps},
            "order": {n: v.order_deps for n, v in nodes.items() if v.order_deps},
        }

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise if a given parameter is taken by no step, or a step's parameter has no value
        (every such problem, together: see :meth:`param_problems`)."""
        if all(k in self.run_params for k in params) and all(
            p in params or p in node.spec.defaults
            for node in self.nodes.values()
            for p in node.run_params
        ):
            return  # the common case: nothing wrong, nothing collected
        FlowProblemsError.raise_all(self.flow, self.param_problems(params))

    def param_problems(self, params: Mapping[str, Any]) -> list[FlowDefinitionError]:
        """Each parameter given that no step takes, and each step parameter with no value."""
        out: list[FlowDefinitionError] = [
            UnknownParameterError(self.flow, key, self.run_params)
            for key in params
            if key not in self.run_params
        ]
        for node in self.nodes.values():
            for p in node.run_params:
                if p not in params and p not in node.spec.defaults:
                    out.append(UnboundParameterError(node.name, p, self.nodes.keys()))
        return out

    def downstream_of(self, names: Iterable[str]) -> set[str]:
        """The given steps and every step that depends on them, directly or not."""
        out: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(self.nodes[n].downstream)
        return out

    def upstream_of(self, names: Iterable[str]) -> set[str]:
        """The given steps and every step they depend on, directly or not."""
        out: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(self.nodes[n].upstream)
        return out


def machine_resources() -> tuple[float, int]:
    """CPUs and bytes of memory of this machine (what local executors may hand out)."""
    cpus = float(os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 2**62
    return cpus, int(memory)


def _pool_problem(spec: Step, pools: Mapping[str, int]) -> FlowDefinitionError:
    """A step's pool that the flow does not declare."""
    close = suggest(str(spec.pool), pools)
    hint = f" Did you mean {close!r}?" if close else ""
    declared = ", ".join(sorted(pools)) or "none"
    return FlowDefinitionError(
        f"step {spec.name!r} uses pool {spec.pool!r}, which the flow does not declare "
        f"(pools: {declared}). Declare it: Flow(..., pools={{{spec.pool!r}: N}}).{hint}"
    )


def check_fit(steps: Iterable[Step], cpus: float, memory: float, where: str, fix: str) -> None:
    """Raise FlowDefinitionError for the first step needing more CPUs or memory than offered."""
    for spec in steps:
        if spec.cpus is not None and spec.cpus > cpus:
            raise FlowDefinitionError(
                f"step {spec.name!r} needs cpus={spec.cpus:g}, but {where} has {cpus:g}. {fix}"
            )
        if spec.memory is not None and spec.memory > memory:
            raise FlowDefinitionError(
                f"step {spec.name!r} needs memory={spec.memory / 1e9:.1f}GB, but {where} has "
                f"{memory / 1e9:.1f}GB. {fix}"
            )
