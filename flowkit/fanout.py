"""Fan-out: a ``matrix=`` or ``map_over=`` step runs as instances, then gathers their results.

Instances are Nodes made when the step is decided (so ``map_over`` can use an upstream output
known only at run time). Each has its own name (``transform[batch=3]``, ``fetch[page-7]``),
journal record, cache key and retry budget; the step itself then succeeds with the list of their
outputs in order, so dependents see one value as with any other step.

A ``map_over`` instance is named after its item's value, not its position: adding, removing or
reordering items leaves the other instances' names and keys alone, so only new items run. See
:func:`item_label` for how a value becomes a name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from .codec import inline_bytes
from .graph import Node
from .keys import digest

__all__ = ["FanOutError", "gather_hash", "instances", "item_label", "label"]

#: Strings shown as they are in an instance name: short, and nothing that needs quoting.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+-]{0,39}")
#: Other strings this short are shown quoted, unless they hold a character from this set.
_UNQUOTABLE = re.compile(r"['\\\[\]\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?|nan|inf|-inf")
_WORDS = frozenset({"None", "True", "False"})
_HASH_CHARS = 10


class FanOutError(Exception):
    """Instances of a fan-out step failed, or ``map_over`` got something that is not a list."""


def label(value: Any) -> str:
    """How a matrix value appears in an instance name."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    return repr(value)


def item_label(value: Any, key: str) -> str:
    """How a ``map_over`` item appears in its instance's name (``key``: the item's hash).

    ``None``, booleans, integers and floats as Python prints them (``7``, ``0.5``); a short
    string as it is when it needs no quoting (``north``, ``2026-11-25``, ``data/a.csv``), else
    quoted (``'New York'``, ``'7'`` for the string, so it is not the integer); anything else
    (long strings, tuples, dicts, objects) as ``#`` and the start of its content hash.
    """
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        if len(text) <= 20:
            return text
    elif isinstance(value, float):
        text = repr(value)
        if len(text) <= 24:
            return text
    elif isinstance(value, str):
        if _PLAIN.fullmatch(value) and value not in _WORDS and not _NUMBER.fullmatch(value):
            return value
        if 0 < len(value) <= 40 and not _UNQUOTABLE.search(value):
            return f"'{value}'"
    return "#" + key[:_HASH_CHARS]


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
        seen: dict[str, int] = {}
        for item in mapped:
            key = _item_key(item)
            name = item_label(item, key)
            # equal items share a label: the second is name~2, the third name~3, ...
            n = seen[name] = seen.get(name, 0) + 1
            if n > 1:
                name = f"{name}~{n}"
            out.append(
                Node(
                    **base,
                    instance=f"{spec.name}[{name}]",
                    bindings=((spec.map_over, item),),
                    binding_keys=((spec.map_over, key),),
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
