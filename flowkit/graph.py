"""The dependency graph of a flow: a networkx DiGraph, its validation and its tiers.

An edge ``u -> v`` means "v depends on u". A dependency is a *data* dependency when v has a
parameter named u (it receives u's output), an *order* dependency when it only comes from
``depends_on``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from .dsl import Step
from .errors import CycleError, UnboundParameterError, UnknownDependencyError, UnknownParameterError

__all__ = ["FlowGraph", "Node"]


@dataclass(frozen=True, slots=True)
class Node:
    """A step placed in its flow: what it receives and from where."""

    spec: Step
    data_deps: tuple[str, ...]
    order_deps: tuple[str, ...]
    run_params: tuple[str, ...]
    downstream: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def upstream(self) -> tuple[str, ...]:
        return self.data_deps + self.order_deps


class FlowGraph:
    """A validated DAG of steps with a deterministic topological order.

    Raises:
        UnknownDependencyError: a ``depends_on`` name is not a step.
        CycleError: the dependencies form a cycle (the message shows it, with file:line).
    """

    def __init__(self, flow: str, steps: Mapping[str, Step]) -> None:
        self.flow = flow
        dag: nx.DiGraph[str] = nx.DiGraph()
        dag.add_nodes_from(steps)
        partial: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        for name, spec in steps.items():
            data = tuple(p for p in spec.params if p in steps and p != name)
            for dep in spec.depends_on:
                if dep not in steps:
                    raise UnknownDependencyError(name, dep, steps.keys())
            order = tuple(d for d in spec.depends_on if d not in data)
            params = tuple(p for p in spec.params if p not in data)
            partial[name] = (data, order, params)
            dag.add_edges_from((d, name) for d in data + order)
        if not nx.is_directed_acyclic_graph(dag):
            cycle = [u for u, _ in nx.find_cycle(dag)]
            raise CycleError(flow, cycle, [steps[n].location for n in cycle])
        self.dag = dag
        self.tiers: list[list[str]] = [sorted(g) for g in nx.topological_generations(dag)]
        self.order: list[str] = [n for tier in self.tiers for n in tier]
        self.nodes: dict[str, Node] = {}
        for name in self.order:
            data, order, params = partial[name]
            self.nodes[name] = Node(steps[name], data, order, params, tuple(sorted(dag.succ[name])))
        self.run_params: frozenset[str] = frozenset(
            p for n in self.nodes.values() for p in n.run_params
        )

    def __len__(self) -> int:
        return len(self.nodes)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise if a given parameter is taken by no step, or a step's parameter has no value."""
        for key in params:
            if key not in self.run_params:
                raise UnknownParameterError(self.flow, key, self.run_params)
        for node in self.nodes.values():
            for p in node.run_params:
                if p not in params and p not in node.spec.defaults:
                    raise UnboundParameterError(node.name, p, self.nodes.keys())

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
