"""Capture each step attempt's own output — ``print()`` and logging records — into its log file.

How it works (one process; every worker process does the same for itself):

* ``sys.stdout`` and ``sys.stderr`` are replaced, once, by a thread-aware proxy. A write made
  while a step attempt runs in the current thread (or in an asyncio task or
  ``asyncio.to_thread`` call of that attempt: the routing lives in a :mod:`contextvars` variable)
  goes to that attempt's :class:`StepLog`; any other write goes to the stream that was there
  before. Several steps printing at once on the thread executor each land in their own file.
* While attempts run, a handler on the root logger writes the records they emit to their logs
  (the ``flowkit.step`` loggers behind ``ctx.log`` are set to INFO when they have no level, so
  ``ctx.log.info(...)`` is kept). Your own handlers still receive every record as configured.
  The handler is removed when no attempt runs, so ``logging.basicConfig()`` between runs works.
* The log file is opened on the first write, so an attempt that prints nothing costs no file.
  It is line-buffered: what a step printed before a crash or a kill is on disk.

A step's output goes to its file *instead of* the terminal, so parallel steps cannot garble the
console or break ``--log-format json`` on stdout; ``flowkit logs`` prints it, and a failure shows
its last lines. Not captured: output written to file descriptors directly (subprocesses,
C extensions, ``os.write``) and writes from threads the step starts itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

__all__ = ["MARK", "StepLog", "begin", "end", "failed", "note", "route", "tail", "unroute"]

#: Lines flowkit writes into a step log (attempt headers, failures) start with this.
MARK = "=== flowkit: "

_current: contextvars.ContextVar[StepLog | None] = contextvars.ContextVar(
    "flowkit_step_log", default=None
)


class _Capture:
    """This process's capture: ``sys.stdout``/``sys.stderr`` and the root logger are the
    process's, so there is one (a forked child gets a fresh one: :meth:`after_fork`)."""

    __slots__ = ("active", "err", "lock", "open_lock", "out")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # installing, counting the attempts running (not in handlers)
        self.open_lock = threading.Lock()  # opening a log file (taken inside logging handlers)
        self.active = 0  # attempts running in this process: the root handler is attached while > 0
        self.out: Any = None  # the proxies installed as sys.stdout and sys.stderr
        self.err: Any = None

    def after_fork(self) -> None:
        # a fork while another thread held the lock must not deadlock; attempts running in
        # other threads of the parent do not exist in the child
        self.lock, self.open_lock = threading.Lock(), threading.Lock()
        self.active = 0
        with contextlib.suppress(Exception):
            logging.getLogger().removeHandler(_HANDLER)

    def attach(self) -> None:
        """One more attempt (or run) needs the root handler."""
        with self.lock:  # logging's lock is taken inside ours, never the other way round
            self.active += 1
            if _HANDLER not in _ROOT.handlers:
                _ROOT.addHandler(_HANDLER)

    def reattach(self) -> None:
        """Put the root handler back while attempts still need it (someone removed it)."""
        with self.lock:
            if self.active > 0 and _HANDLER not in _ROOT.handlers:
                _ROOT.addHandler(_HANDLER)

    def detach(self) -> None:
        with self.lock:
            self.active = max(0, self.active - 1)
            if self.active == 0:
                _ROOT.removeHandler(_HANDLER)


_CAPTURE = _Capture()


def _after_fork_in_child() -> None:
    _CAPTURE.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class StepLog:
    """The log of one step attempt: appended to ``path``, opened on the first write."""

    __slots__ = ("_file", "_lost", "attempt", "path", "start")

    def __init__(self, path: str, attempt: int | None, start: float) -> None:
        self.path, self.attempt, self.start = path, attempt, start
        self._file: IO[str] | None = None
        self._lost = False

    def write(self, text: str) -> int:
        if not text or self._lost:
            return len(text)
        try:
            f = self._file or self._open()
            f.write(text)
        except OSError as exc:  # a full disk must not fail the step that printed
            self._give_up(exc)
        return len(text)

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        """The log cannot be written: drop the attempt's output from now on, and say so once."""
        self._lost = True
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        with contextlib.suppress(Exception):
            print(
                f"flowkit: warning: cannot write the step log {self.path} "
                f"({exc.strerror or exc}); the rest of this attempt's output is dropped",
                file=sys.__stderr__,
            )

    def _open(self) -> IO[str]:
        with _CAPTURE.open_lock:
            if self._file is None:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                f = open(self.path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
                f.write(header(self.attempt, self.start) + "\n")
                self._file = f
            return self._file

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):  # a full disk: what could be written was
                f.close()


def header(attempt: int | None, start: float) -> str:
    """The line that opens an attempt's section of a step log."""
    when = datetime.fromtimestamp(start).astimezone().isoformat(timespec="milliseconds")
    which = f"attempt {attempt}" if attempt is not None else "attempt"
    worker = f"pid {os.getpid()}, thread {threading.current_thread().name}"
    return f"{MARK}{which} started {when} ({worker}) ==="


class _StreamProxy:
    """Stands in for ``sys.stdout``/``sys.stderr``: a step's writes go to its log, others pass."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, text: str) -> int:
        sink = _current.get()
        if sink is None:
            n: int = self._real.write(text)
            return n
        return sink.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        sink = _current.get()
        if sink is None:
            self._real.flush()
        else:
            sink.flush()

    def isatty(self) -> bool:
        # a step writing to its log file should not emit terminal control codes
        return _current.get() is None and bool(self._real.isatty())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __repr__(self) -> str:
        return f"<flowkit step-output proxy for {self._real!r}>"


def _walk_handlers(record: logging.LogRecord) -> tuple[bool, bool]:
    """(whether a handler other than ours sees ``record``, whether one writes it to a proxy)."""
    others = echoed = False
    # no logging.getLogger(): it takes logging's module lock, and a handler must not
    found = logging.Logger.manager.loggerDict.get(record.name)
    logger: logging.Logger | None = found if isinstance(found, logging.Logger) else _ROOT
    while logger is not None:
        for h in logger.handlers:
            if h is _HANDLER:
                continue
            others = True
            if (
                isinstance(h, logging.StreamHandler)
                and isinstance(h.stream, _StreamProxy)
                and record.levelno >= h.level
            ):
                echoed = True
        logger = logger.parent if logger.propagate else None
    return others, echoed


class _CaptureHandler(logging.Handler):
    """Writes records emitted during a step attempt to its log; otherwise stays out of the way."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _current.get()
        if sink is None:
            # outside steps behave as if we were not installed: Python's last-resort handler
            # prints warnings when no other handler exists
            last = logging.lastResort
            if last is not None and record.levelno >= last.level and not _walk_handlers(record)[0]:
                last.handle(record)
            return
        if _walk_handlers(record)[1]:  # another handler writes it to sys.stdout/stderr: captured
            return
        try:
            sink.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


_HANDLER = _CaptureHandler()
_HANDLER.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
_ROOT = logging.getLogger()


def _install_streams() -> None:
    with _CAPTURE.lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _StreamProxy):
                setattr(sys, name, _StreamProxy(stream))
        _CAPTURE.out, _CAPTURE.err = sys.stdout, sys.stderr
        steps = logging.getLogger("flowkit.step")
        if steps.level == logging.NOTSET:
            steps.setLevel(logging.INFO)


def begin(path: str, attempt: int | None, start: float) -> tuple[StepLog, contextvars.Token[Any]]:
    """Route this thread's (and context's) output to ``path`` until :func:`end`."""
    # the root handler is there only while attempts run, so that logging.basicConfig() called
    # between runs still configures logging (it does nothing once the root has a handler)
    _CAPTURE.attach()
    return route(path, attempt, start)


def route(path: str, attempt: int | None, start: float) -> tuple[StepLog, contextvars.Token[Any]]:
    """:func:`begin` for an attempt that runs inside :func:`session` in the session's own
    thread: the root handler is attached for the whole session, so only the routing switches
    (undo it with :func:`unroute`)."""
    if sys.stdout is not _CAPTURE.out or sys.stderr is not _CAPTURE.err:
        _install_streams()  # first use, or someone replaced a stream since
    if _HANDLER not in _ROOT.handlers:  # an earlier step removed it (basicConfig(force=True))
        _CAPTURE.reattach()
    sink = StepLog(path, attempt, start)
    return sink, _current.set(sink)


def unroute(sink: StepLog, token: contextvars.Token[Any]) -> None:
    """Undo :func:`route`: stop routing to ``sink`` and close its file."""
    _current.reset(token)
    if sink._file is not None:
        sink.close()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Keep the root handler installed for a whole run (cheaper than once per attempt)."""
    _CAPTURE.attach()
    try:
        yield
    finally:
        _CAPTURE.detach()


def failed(sink: StepLog, exc: BaseException, traceback: str = "") -> None:
    """Note in the log that the attempt raised, and its ``traceback`` below (it also opens the
    log of a silent attempt). :func:`tail` leaves both out: they are not the step's output."""
    first = str(exc).split("\n", 1)[0]
    with contextlib.suppress(Exception):
        sink.write(f"{MARK}attempt failed: {type(exc).__qualname__}: {first} ===\n")
        if traceback:
            sink.write(traceback if traceback.endswith("\n") else traceback + "\n")


def note(path: str, text: str) -> None:
    """Append a flowkit marker line to the log at ``path`` (for what the attempt could not
    write itself: that it timed out and was killed or abandoned)."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{MARK}{text} ===\n")


def end(sink: StepLog, token: contextvars.Token[Any]) -> None:
    """Stop routing to ``sink`` and close its file."""
    _current.reset(token)
    sink.close()
    _CAPTURE.detach()


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FAILED = MARK + "attempt failed: "
_HEADER = re.compile(re.escape(MARK) + r"attempt(?: \d+)? started (\S+) ")


def clean_line(line: str) -> str:
    """``line`` as a terminal would end up showing it, without escape or control characters."""
    line = _ANSI.sub("", line)
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROL.sub("", line.expandtabs(4))


def tail(path: str | os.PathLike[str], n: int = 10, since: float | None = None) -> list[str]:
    """The last ``n`` lines the latest attempt wrote to the log at ``path`` (cleaned for a
    terminal; flowkit's own marker lines left out). Empty when there is no such log, or when the
    latest attempt started before ``since`` (a timestamp): the log is from an earlier run."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")  # not splitlines(): keep \r
    if lines and not lines[-1]:
        lines.pop()
    if size > len(data) and lines:
        lines = lines[1:]  # a partial first line
    section: list[str] = []
    for line in reversed(lines):
        m = _HEADER.match(line)
        if m is not None:
            if since is not None:
                try:
                    started = datetime.fromisoformat(m.group(1)).timestamp()
                except ValueError:
                    started = time.time()
                if started < since - 1.0:
                    return []
            break
        if line.startswith(_FAILED):
            section.clear()  # what follows the failure's marker is its traceback
        elif not line.startswith(MARK):
            section.append(line)
    section.reverse()
    return [clean_line(x) for x in section[-n:]]
