"""Fan-out: a ``matrix=`` or ``map_over=`` step runs as instances, then gathers their results.

Instances are Nodes made when the step is decided (so ``map_over`` can use an upstream output
known only at run time). Each has its own name (``transform[batch=3]``, ``load[7]``), journal
record, cache key and retry budget; the step itself then succeeds with the list of their outputs
in order, so dependents see one value as with any other step.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .codec import inline_bytes
from .graph import Node
from .keys import digest

__all__ = ["FanOutError", "gather_hash", "instances", "label"]


class FanOutError(Exception):
    """Instances of a fan-out step failed, or ``map_over`` got something that is not a list."""


def label(value: Any) -> str:
    """How a matrix value appears in an instance name."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return repr(value)


def _item_key(value: Any) -> str:
    data = inline_bytes(value)
    if data is not None:
        return digest(data)
    import pickle

    try:
        return digest(pickle.dumps(value, protocol=5))
    except Exception:
        return digest(repr(value))


def instances(node: Node, mapped: Any = None) -> list[Node]:
    """The instance Nodes of fan-out step ``node`` (``mapped``: the map_over upstream's output).

    Raises:
        FanOutError: ``map_over`` received something that is not a list or tuple.
    """
    spec = node.spec
    base: dict[str, Any] = {
        "spec": spec,
        "data_deps": node.data_deps,
        "order_deps": node.order_deps,
        "run_params": node.run_params,
        "downstream": (node.name,),
    }
    out: list[Node] = []
    if spec.map_over is not None:
        if not isinstance(mapped, (list, tuple)):
            raise FanOutError(
                f"step {spec.name!r} maps over {spec.map_over!r}, which returned "
                f"{type(mapped).__name__}; map_over needs a list or tuple"
            )
        for i, item in enumerate(mapped):
            out.append(
                Node(
                    **base,
                    instance=f"{spec.name}[{i}]",
                    bindings=((spec.map_over, item),),
                    binding_keys=((spec.map_over, _item_key(item)),),
                )
            )
        return out
    axes = [k for k, _ in spec.matrix]
    for combo in itertools.product(*(values for _, values in spec.matrix)):
        name = ",".join(f"{k}={label(v)}" for k, v in zip(axes, combo, strict=True))
        bindings = tuple(zip(axes, combo, strict=True))
        out.append(
            Node(
                **base,
                instance=f"{spec.name}[{name}]",
                bindings=bindings,
                binding_keys=tuple((k, _item_key(v)) for k, v in bindings),
            )
        )
    return out


def gather_hash(hashes: Sequence[str]) -> str:
    """The content hash of a gathered list, from its items' hashes (order matters)."""
    return digest("gather", *hashes)
