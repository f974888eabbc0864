"""The journal's record vocabulary: how a line is sealed on write, and checked on read.

Every line the journal gets is one JSON object sealed with a ``"crc"`` field, last: the CRC-32
(``zlib.crc32``) of the line as it was serialized without that field. Reading a line checks, in
order: it parses as a JSON object; its seal matches its bytes; its ``ev`` is a known record type;
its required fields are present with the right types, and status values are known ones. A line that
fails any check is damaged. Journals written before lines were sealed stay readable: a line without
a seal is accepted until a sealed line has been seen in the file, after which a missing seal is
damage too (an edit that dropped it, or a flip in its name).

Unknown *fields* are accepted (a newer flowkit may add some); unknown record *types* are not.

A journal file is read whole (:func:`read_journal`), forgiving one kind of damage: a last line
without a newline that does not check out, which is a write cut short by a kill.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import CorruptStateError

__all__ = [
    "EVENTS",
    "RUN_STATUSES",
    "SKIP_STATUSES",
    "STEP_STATUSES",
    "RecordError",
    "parse_line",
    "read_journal",
    "records_end",
    "seal",
    "validate",
]

#: What a finished step (a ``done`` record) can say.
STEP_STATUSES = frozenset({"succeeded", "failed", "timed_out", "skipped"})
#: What a ``skip`` record can say (records written before ``upstream_failed`` existed have none).
SKIP_STATUSES = frozenset({"skipped", "upstream_failed"})
#: What a run's ``end`` record can say.
RUN_STATUSES = frozenset({"succeeded", "failed", "interrupted", "timed_out"})

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))

#: Field -> accepted types, per record type: (required, optional). Types are matched exactly, as
#: JSON parses to exact types: ``true`` is not an ``int`` here.
EVENTS: dict[str, tuple[dict[str, tuple[type, ...]], dict[str, tuple[type, ...]]]] = {
    "run": (
        {"format": (int,), "flow": (str,), "run_id": (str,), "params": (dict,), "time": _NUM},
        {"pid": (int,)},
    ),
    "start": ({"step": (str,), "time": _NUM}, {"attempt": (int,)}),
    "done": (
        {"step": (str,), "status": (str,)},
        {
            "key": (str,),
            "code": (str,),
            "in": (dict,),
            "attempts": (int,),
            "start": _OPT_NUM,
            "end": _OPT_NUM,
            "cpu": _NUM,
            "dur": _OPT_NUM,
            "worker": _OPT_STR,
            "ref": (str,),  # an output file in the run's folder (runs before the object store)
            "obj": (str,),  # an object of the flow's object store
            "hash": (str,),
            "mac": (str,),
            "ctx": (dict,),
            "reason": (str,),
            "peak_rss": (int,),
            "error": (dict,),
            "instances": (int,),
            "of": (list,),  # a gathered fan-out step's instances, by name
            "p": (dict,),  # run parameter -> short hash of its value
            "from": (dict,),  # restored from the shared cache: the run and step that made it
        },
    ),
    "retry": (
        {"step": (str,), "attempt": (int,)},
        {"time": _NUM, "delay": _NUM, "error": (dict,), "timed_out": (bool,), "worker": _OPT_STR},
    ),
    # one record per restored step, or (since format 2) one for the steps restored together
    "cached": ({}, {"step": (str,), "steps": (list,)}),
    "skip": ({"step": (str,)}, {"reason": (str,), "status": (str,)}),
    "end": ({"status": (str,), "time": _NUM}, {"counts": (dict,)}),
    "notify": (
        {"notifier": (str,), "event": (str,), "ok": (bool,)},
        {"time": _NUM, "target": (str,), "attempts": (int,), "duration_s": _NUM, "error": (str,)},
    ),
}

_FIELDS = {ev: {"ev": (str,), **req, **opt} for ev, (req, opt) in EVENTS.items()}
_REQUIRED = {ev: tuple(req) for ev, (req, _) in EVENTS.items()}


class RecordError(ValueError):
    """One journal line is damaged; the message says how (the store adds file and line)."""


def seal(record: Mapping[str, Any]) -> bytes:
    """One journal line (newline included): ``record`` as JSON, sealed with its CRC-32."""
    line = orjson.dumps(record)
    return b'%b,"crc":%d}\n' % (line[:-1], zlib.crc32(line))


def parse_line(line: bytes, sealed: bool) -> tuple[dict[str, Any], bool]:
    """Parse and check one journal line (without its newline).

    ``sealed``: whether an earlier line of the file carried a seal. Returns the record (without
    its seal) and whether this line carried one.

    Raises:
        RecordError: the line does not parse, its seal does not match, it lacks a seal after
            sealed lines, or it is not a valid record (see :func:`validate`).
    """
    missing = "this line has no checksum, unlike the lines before it" if sealed else None
    rec, had_seal = unseal(line, missing)
    validate(rec)
    return rec, had_seal


def unseal(line: bytes, missing: str | None) -> tuple[dict[str, Any], bool]:
    """A sealed line (as :func:`seal` wrote it, without its newline) parsed into its JSON object,
    its seal checked and removed; returns it and whether the line carried a seal.

    ``missing``: the error for a line without a seal (None: a line may have none).

    Raises:
        RecordError: the line is not a JSON object, its seal is damaged or does not match.
    """
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RecordError("this line is not valid JSON") from None
    if not isinstance(rec, dict):
        raise RecordError("this line is not a JSON object")
    crc = rec.pop("crc", None)
    if crc is None:
        if missing is not None:
            raise RecordError(missing)
        return rec, False
    # the seal is the line's end, exactly as seal() wrote it (nothing after it escapes it)
    end = b',"crc":%d}' % crc if crc.__class__ is int else b""
    if not end or not line.endswith(end):
        raise RecordError("its checksum field is damaged")
    if zlib.crc32(line[: -len(end)] + b"}") != crc:
        raise RecordError("its checksum does not match its content (the line was altered)")
    return rec, True


def validate(rec: Mapping[str, Any]) -> None:
    """Check one record (as parsed from JSON): its type, its fields' types, its status values.

    Raises:
        RecordError: naming the record type and the field at fault.
    """
    ev = rec.get("ev")
    # Every check but those of values inside a field depends only on the record's type, its
    # status, its field names and the types of their values: a journal's records have a few
    # such shapes, each checked in full once, then found with one set lookup.
    try:
        shape: tuple[Any, ...] | None = (ev, rec.get("status"), *rec, *map(type, rec.values()))
        known = shape in _good_shapes
    except TypeError:  # an unhashable type or status: the full check names it
        shape, known = None, False
    if not known:
        _check(ev, rec)
        if shape is not None and len(_good_shapes) < _MAX_SHAPES:
            _good_shapes.add(shape)
    if ev == "done":
        if "ctx" in rec and rec["status"] == "succeeded":
            _check_ctx(rec["ctx"])
    elif ev == "cached":
        steps = rec.get("steps")
        if steps is not None and not all(n.__class__ is str for n in steps):
            raise RecordError("the 'steps' of a 'cached' record must be step names")


#: (record type, status, field names..., their values' types...) of records that checked out
_good_shapes: set[tuple[Any, ...]] = set()
_MAX_SHAPES = 4096


def _check(ev: Any, rec: Mapping[str, Any]) -> None:
    """The checks :func:`validate` remembers by shape, in full."""
    if not isinstance(ev, str) or ev not in _FIELDS:
        raise RecordError(f"unknown record type {ev!r}")
    _check_fields(ev, rec)
    if ev == "done":
        _check_done(rec)
    elif ev == "end" and rec["status"] not in RUN_STATUSES:
        raise RecordError(f"unknown run status {rec['status']!r}")
    elif ev == "skip" and rec.get("status", "skipped") not in SKIP_STATUSES:
        raise RecordError(f"unknown skip status {rec['status']!r}")
    elif ev == "cached" and "step" not in rec and rec.get("steps") is None:
        raise RecordError("a 'cached' record needs a 'step' field or a 'steps' list")


def _check_fields(ev: str, rec: Mapping[str, Any]) -> None:
    fields = _FIELDS[ev]
    for name, value in rec.items():  # the record's fields, not the schema's: the faster loop
        types = fields.get(name)
        if types is not None and type(value) not in types:
            raise RecordError(f"field {name!r} of a {ev!r} record has a wrong type ({value!r})")
    for name in _REQUIRED[ev]:
        if name not in rec:
            raise RecordError(f"a {ev!r} record needs a {name!r} field")


def _check_done(rec: Mapping[str, Any]) -> None:
    status = rec["status"]
    if status not in STEP_STATUSES:
        raise RecordError(f"unknown step status {status!r}")
    if status == "succeeded":
        if "hash" not in rec:
            raise RecordError("a succeeded step's record needs its output 'hash'")
        if "instances" not in rec and "ref" not in rec and "out" not in rec and "obj" not in rec:
            raise RecordError("a succeeded step's record needs its output ('out' or 'obj')")
    elif status in ("failed", "timed_out") and not isinstance(rec.get("error"), dict):
        raise RecordError(f"a {status} step's record needs its 'error'")


def _check_ctx(ctx: Mapping[str, Any]) -> None:
    if not isinstance(ctx.get("hash"), str) or not (
        "out" in ctx or isinstance(ctx.get("obj") or ctx.get("ref"), str)
    ):
        raise RecordError("the 'ctx' field of a succeeded step's record is malformed")


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's records, each checked with :func:`parse_line`.

    A damaged last line without a newline is a write cut short by a kill: it is skipped (and cut
    off by the next ``RunStore.open``).

    Raises:
        CorruptStateError: any other damaged line, with its file and line number.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptStateError(path, None, f"it cannot be read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    last = len(lines) - 1
    sealed = False
    loads, crc32 = orjson.loads, zlib.crc32
    for i, line in enumerate(lines):
        if not line:
            continue
        # a sealed line, checked as parse_line does with fewer steps; anything else (damage,
        # a line written before seals) goes through parse_line, which says what is wrong
        try:
            rec: Any = loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if rec.__class__ is dict and (crc := rec.pop("crc", None)).__class__ is int:
            end = b',"crc":%d}' % crc
            if line.endswith(end) and crc32(line[: -len(end)] + b"}") == crc:
                try:
                    validate(rec)
                except RecordError as exc:
                    if i == last:
                        return
                    raise CorruptStateError(
                        path, i + 1, f"{exc}; only a torn last line is forgiven"
                    ) from None
                sealed = True
                yield rec
                continue
        try:
            rec, has_seal = parse_line(line, sealed)
        except RecordError as exc:
            if i == last:  # no newline after it: a kill in the middle of a write
                return
            raise CorruptStateError(
                path, i + 1, f"{exc}; only a torn last line is forgiven"
            ) from None
        sealed = sealed or has_seal
        yield rec


def records_end(f: IO[bytes]) -> tuple[int, bool]:
    """Where the records :func:`read_journal` uses end in the open journal ``f``.

    Returns ``(offset, unterminated)``: ``unterminated`` when the last line is a whole record
    that lacks its newline (a kill between the two: it was used, so it is kept); otherwise the
    offset after the last newline, past which a torn write is to be cut off.
    """
    size = f.seek(0, 2)
    start = _line_start(f, size)
    if start == size:
        return size, False
    f.seek(start)
    last = f.read()
    before = _line_start(f, start - 1) if start > 0 else start
    f.seek(before)
    previous = f.read(start - before).rstrip(b"\n")
    try:
        sealed = parse_line(previous, False)[1]
    except RecordError:
        sealed = False
    try:
        parse_line(last, sealed)
    except RecordError:
        return start, False
    return size, True


def _line_start(f: IO[bytes], size: int, chunk: int = 65536) -> int:
    """Offset just after the last newline before ``size`` (0 if none), reading backwards."""
    end = size
    while end > 0:
        begin = max(0, end - chunk)
        f.seek(begin)
        block = f.read(end - begin)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0
