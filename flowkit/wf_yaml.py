"""Reading a workflow file safely: bounded YAML, and the line of every key.

PyYAML's own composer recurses once per nesting level and its constructor expands aliases in
full, so a 10,000-deep document or an alias bomb ("billion laughs") can exhaust the stack or the
memory. Here the parser's event stream is turned into values by an explicit stack: nesting is
limited to :data:`MAX_DEPTH`, and the values that aliases expand to are counted (an alias shares
the anchored value, it is not copied) and limited to :data:`MAX_VALUES`. Only safe tags are
resolved (the ``SafeLoader``'s), merge keys (``<<: *defaults``) included.

Mappings come back as :class:`Lined` dicts and sequences as :class:`LinedList`: they remember the
line of each key or item, so every message can name ``file:line``.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "MAX_VALUES", "Lined", "LinedList", "YamlLimitError", "read_yaml"]

#: How deeply mappings and sequences may nest (a workflow needs about 6).
MAX_DEPTH = 64
#: How many values a document may hold once its aliases are expanded.
MAX_VALUES = 500_000

_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SAFE_TAGS = frozenset(t for t in yaml.constructor.SafeConstructor.yaml_constructors if t)


class YamlLimitError(ValueError):
    """The document is malformed or exceeds a limit; ``line`` is 1-based (None when unknown)."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        super().__init__(message)


class Lined(dict[Any, Any]):
    """A mapping read from a file, with the 1-based line of the mapping and of each key."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        """The line of ``key`` (the mapping's own line when the key has none)."""
        return self.lines.get(key, self.line)


class LinedList(list[Any]):
    """A sequence read from a file, with the 1-based line of the sequence and of each item."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []

    def line_of(self, index: int) -> int | None:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class _Frame:
    __slots__ = ("anchor", "container", "key", "key_line", "merges", "size")

    def __init__(self, container: Lined | LinedList, anchor: str | None) -> None:
        self.container, self.anchor = container, anchor
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.size = 1
        self.merges: list[Any] = []


_NO_KEY = object()


def read_yaml(text: str) -> Any:
    """Parse one YAML document with bounded nesting and alias expansion.

    Raises:
        YamlLimitError: invalid YAML, several documents, nesting deeper than :data:`MAX_DEPTH`,
            or aliases expanding to more than :data:`MAX_VALUES` values (names the anchors).
    """
    resolver = yaml.resolver.Resolver()
    constructor = yaml.constructor.SafeConstructor()
    anchors: dict[str, tuple[Any, int]] = {}
    used: dict[str, int] = {}
    stack: list[_Frame] = []
    total = 0
    documents = 0
    root: Any = None
    try:
        for event in yaml.parse(text, Loader=_Loader):
            mark = event.start_mark
            line = mark.line + 1 if mark is not None else 0
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise YamlLimitError(line, "one document per file: remove the '---' here")
                continue
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise YamlLimitError(
                        line,
                        f"nested more than {MAX_DEPTH} levels deep; a workflow needs far fewer "
                        "(is this the right file?)",
                    )
                tag = event.tag
                if tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                    raise YamlLimitError(line, f"tag {tag!r} is not allowed (safe loading only)")
                box: Lined | LinedList = (
                    Lined(line) if isinstance(event, yaml.MappingStartEvent) else LinedList(line)
                )
                stack.append(_Frame(box, event.anchor))
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                value = frame.container
                if frame.merges and isinstance(value, Lined):
                    _merge(value, frame.merges, line)
                size = frame.size
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, size)
                root = _add(stack, value, size, line, root)
                continue
            if isinstance(event, yaml.AliasEvent):
                anchor = event.anchor
                if anchor not in anchors:
                    raise YamlLimitError(line, f"alias *{anchor} names no (finished) anchor")
                value, size = anchors[anchor]
                used[anchor] = used.get(anchor, 0) + 1
                total += size
                if total > MAX_VALUES:
                    names = ", ".join(
                        f"&{a} (used {n}x)" for a, n in sorted(used.items(), key=lambda x: -x[1])
                    )
                    raise YamlLimitError(
                        line,
                        f"YAML aliases expand to more than {MAX_VALUES:,} values (anchors: "
                        f"{names}); an alias bomb? Write the values out, or alias less",
                    )
                root = _add(stack, value, size, line, root, merge_ok=True)
                continue
            if isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.tag in (None, "!"):
                    tag = resolver.resolve(  # type: ignore[no-untyped-call]
                        yaml.ScalarNode, event.value, event.implicit
                    )
                else:
                    tag = event.tag
                scalar: Any
                if tag == _STR:  # most scalars: no constructor needed
                    scalar = event.value
                elif tag == _MERGE:
                    scalar = _MERGE_KEY
                elif tag not in _SAFE_TAGS:
                    raise YamlLimitError(line, f"tag {tag!r} is not allowed (safe loading only)")
                else:
                    node = yaml.ScalarNode(tag, event.value, style=event.style)
                    scalar = constructor.construct_object(node, deep=True)
                if event.anchor is not None:
                    anchors[event.anchor] = (scalar, 1)
                root = _add(stack, scalar, 1, line, root)
                continue
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlLimitError(mark.line + 1 if mark is not None else None, problem) from None
    return root


class _MergeKey:
    def __repr__(self) -> str:
        return "<<"


_MERGE_KEY = _MergeKey()


def _add(
    stack: list[_Frame], value: Any, size: int, line: int, root: Any, merge_ok: bool = False
) -> Any:
    """Put a finished value into the container being built; returns the document root."""
    if not stack:
        return value
    frame = stack[-1]
    frame.size += size
    box = frame.container
    if isinstance(box, LinedList):
        box.append(value)
        box.lines.append(line)
        return root
    if frame.key is _NO_KEY:
        try:
            hash(value)
        except TypeError:
            raise YamlLimitError(line, "a mapping key must be a plain value") from None
        frame.key, frame.key_line = value, line
        return root
    key, frame.key = frame.key, _NO_KEY
    if key is _MERGE_KEY:
        frame.merges.append(value)
        return root
    if key in box:
        raise YamlLimitError(
            frame.key_line,
            f"key {key!r} appears twice in this mapping (first on line {box.lines[key]})",
        )
    box[key] = value
    box.lines[key] = frame.key_line
    return root


def _merge(box: Lined, merges: list[Any], line: int) -> None:
    """``<<: *defaults`` (or a list of them): keys the mapping does not set itself."""
    sources: list[Any] = []
    for m in merges:
        sources.extend(m if isinstance(m, list) else [m])
    for src in sources:
        if not isinstance(src, dict):
            raise YamlLimitError(line, "'<<' merges mappings only")
        for k, v in src.items():
            if k not in box:
                box[k] = v
                box.lines[k] = src.lines.get(k, line) if isinstance(src, Lined) else line
