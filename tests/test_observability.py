"""Observability: captured step output, ``flowkit logs``, JSON logs, the live view, plain output,
``Flow.stream`` and OpenTelemetry spans."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PYTHON, flowkit_env

from flowkit import (
    Flow,
    RunFinished,
    RunStarted,
    StepCached,
    StepFailed,
    StepRetrying,
    StepStarted,
    StepSucceeded,
    UnknownParameterError,
    capture,
)
from flowkit.capture import MARK, tail
from flowkit.cli import main
from flowkit.errors import ExtraUnavailableError
from flowkit.events import Event
from flowkit.executors import invoke
from flowkit.listeners import ConsoleListener, LoggingListener
from flowkit.result import ErrorInfo, RunResult, RunStatus

ANSI = re.compile(r"\x1b")


def logs_of(state: Path, flow: str, run_id: str | None = None) -> Path:
    return state / flow / (run_id or flow) / "logs"


# --- process-executor steps must be importable ---------------------------------------------------

proc = Flow("proc")


@proc.step()
def chatty(ctx: Any) -> int:
    print("chatty printed this")
    ctx.log.info("chatty logged this")
    return 1


@proc.step()
def loud(chatty: int) -> int:
    print("loud to stderr", file=sys.stderr)
    return chatty + 1


# --- capture -------------------------------------------------------------------------------------


def test_thread_executor_puts_each_steps_output_in_its_own_log_and_not_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = Flow("par")
    barrier = threading.Barrier(4, timeout=5)

    def make(i: int) -> None:
        @f.step(name=f"s{i}")
        def s(ctx: Any) -> int:
            barrier.wait()  # all four run at once
            for k in range(30):
                print(f"s{i} line {k}")
                if k % 7 == 0:
                    time.sleep(0.001)
            ctx.log.info("info from s%d", i)
            logging.getLogger().warning("root warning from s%d", i)
            print(f"s{i} to stderr", file=sys.stderr)
            return i

    for i in range(4):
        make(i)

    @f.step()
    def silent() -> None:
        return None

    # attempts abandoned by earlier tests in this process (timed-out threads still sleeping)
    # keep the root handler attached until they end: the run must give back what it took
    active_before = capture._CAPTURE.active
    result = f.run(state_dir=tmp_path / "st", workers=4, executor="thread")
    assert result.ok
    out, err = capsys.readouterr()
    assert "line" not in out and "s0 to stderr" not in err and "root warning" not in err
    logs = logs_of(tmp_path / "st", "par")
    for i in range(4):
        text = (logs / f"s{i}.log").read_text()
        lines = text.splitlines()
        assert lines[0].startswith(f"{MARK}attempt 1 started ")
        assert [x for x in lines if " line " in x] == [f"s{i} line {k}" for k in range(30)]
        assert f"INFO flowkit.step.s{i}: info from s{i}" in text
        assert f"WARNING root: root warning from s{i}" in text
        assert f"s{i} to stderr" in text
        for j in set(range(4)) - {i}:
            assert f"s{j} " not in text
    assert not (logs / "silent.log").exists()  # nothing printed: no file at all
    # the capturing handler is gone once no step runs: logging.basicConfig() works again
    assert capture._CAPTURE.active <= active_before
    attached = [h for h in logging.getLogger().handlers if type(h).__name__ == "_CaptureHandler"]
    assert bool(attached) == (capture._CAPTURE.active > 0)


def test_inline_steps_keep_capturing_logging_after_a_step_removes_the_root_handlers(
    tmp_path: Path,
) -> None:
    f = Flow("rootless")

    @f.step()
    def clears() -> int:
        root = logging.getLogger()
        removed = list(root.handlers)
        for h in removed:
            root.removeHandler(h)
        return len(removed)

    @f.step()
    def logs(clears: int) -> int:
        logging.getLogger("flowkit.step.logs").info("info after the handlers went")
        return clears

    before = list(logging.getLogger().handlers)
    try:
        result = f.run(state_dir=tmp_path / "st")
    finally:
        root = logging.getLogger()
        for h in before:
            if h not in root.handlers and type(h).__name__ != "_CaptureHandler":
                root.addHandler(h)
    assert result.ok and result["clears"].output >= 1  # it removed flowkit's handler too
    text = (logs_of(tmp_path / "st", "rootless") / "logs.log").read_text()
    assert "INFO flowkit.step.logs: info after the handlers went" in text
    attached = [h for h in logging.getLogger().handlers if type(h).__name__ == "_CaptureHandler"]
    assert bool(attached) == (capture._CAPTURE.active > 0)  # and it goes with the run


def test_process_executor_captures_prints_and_ctx_log(tmp_path: Path) -> None:
    result = proc.run(state_dir=tmp_path / "st", workers=2, executor="process")
    assert result.ok
    logs = logs_of(tmp_path / "st", "proc")
    text = (logs / "chatty.log").read_text()
    assert "chatty printed this" in text
    assert "INFO flowkit.step.chatty: chatty logged this" in text
    assert "loud to stderr" in (logs / "loud.log").read_text()


def test_each_attempt_is_appended_under_its_own_header(tmp_path: Path) -> None:
    f = Flow("retry")

    @f.step(retries=1, backoff=0.0)
    def flaky(ctx: Any) -> int:
        print(f"trying, attempt {ctx.attempt}")
        if ctx.attempt == 1:
            raise ValueError("not yet")
        return 1

    assert f.run(state_dir=tmp_path / "st").ok
    lines = (logs_of(tmp_path / "st", "retry") / "flaky.log").read_text().splitlines()
    assert lines[0].startswith(f"{MARK}attempt 1 started")
    assert lines[1] == "trying, attempt 1"
    assert lines[2] == f"{MARK}attempt failed: ValueError: not yet ==="
    # the failure's traceback (the step's own frames) follows its marker
    second = next(i for i, line in enumerate(lines) if line.startswith(f"{MARK}attempt 2"))
    assert lines[3] == "Traceback (most recent call last):"
    assert lines[second - 1] == "ValueError: not yet"
    assert any("in flaky" in line for line in lines[3:second])
    assert lines[second + 1 :] == ["trying, attempt 2"]


def test_invoke_creates_the_log_folder_lazily_and_captures_async_steps(tmp_path: Path) -> None:
    path = tmp_path / "run" / "logs" / "x.log"
    invoke(lambda: None, {}, None, str(path))
    assert not path.parent.exists()  # a silent attempt opens nothing

    async def step() -> int:
        await asyncio.sleep(0)
        print("from a coroutine")
        return 3

    out = invoke(step, {}, None, str(path), 4)
    assert out[0] == 3
    text = path.read_text()
    assert text.startswith(f"{MARK}attempt 4 started")
    assert "from a coroutine" in text


def test_output_outside_steps_still_reaches_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(lambda: print("captured"), {}, None, str(tmp_path / "a.log"))
    print("after the step")
    out, _ = capsys.readouterr()
    assert out == "after the step\n"


def test_tail_shows_the_latest_attempt_cleaned_for_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    invoke(lambda: print("old attempt"), {}, None, str(path), 1)
    start = time.time()

    def noisy() -> None:
        for i in range(15):
            print(f"\x1b[31mline {i}\x1b[0m")
        print("50%\r100%")
        raise RuntimeError("bad")

    with pytest.raises(RuntimeError):
        invoke(noisy, {}, None, str(path), 2)
    lines = tail(path, 10, since=start)
    assert lines == [f"line {i}" for i in range(6, 15)] + ["100%"]
    assert tail(path, 10, since=time.time() + 60) == []  # the log predates the run
    assert tail(tmp_path / "missing.log") == []


# --- the console ---------------------------------------------------------------------------------

FAILING = """\
import sys
from flowkit import Flow

demo = Flow("demo")


@demo.step()
def ok() -> int:
    print("ok is fine")
    return 1


@demo.step()
def broken(ok: int) -> int:
    for i in range(1, 16):
        print(f"progress {i}")
    print("\\x1b[1mbold\\x1b[0m")
    raise ValueError("disk on fire")
"""


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "failing.py"
    path.write_text(FAILING)
    saved = list(sys.path)
    yield path
    sys.path[:] = saved
    for name in [n for n, m in sys.modules.items() if n == "failing"]:
        del sys.modules[name]


def test_plain_console_shows_a_failures_last_log_lines_without_escape_codes(
    failing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", f"{failing}:demo", "--plain", "--state-dir", str(tmp_path / "st")])
    out, _ = capsys.readouterr()
    assert code == 1
    assert not ANSI.search(out)
    assert all(ch == "\n" or ch >= " " for ch in out)
    assert "[FAILED]    broken (1 attempt" in out
    assert "| progress 15" in out and "| bold" in out
    assert "| progress 7" in out and "progress 6" not in out  # the last 10 lines only
    assert "ok is fine" not in out  # captured, not printed


def test_console_listener_reads_the_log_named_by_the_event(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    invoke(lambda: print("the clue"), {}, None, str(log), 1)
    buf = io.StringIO()
    listener = ConsoleListener(buf)
    err = ErrorInfo("ValueError", "boom")
    listener.on_event(StepFailed("r", "x", 1, time.time(), 0.1, err, False, str(log)))
    assert "[FAILED]    x (1 attempt" in buf.getvalue()
    assert "| the clue" in buf.getvalue()
    silent = io.StringIO()
    ConsoleListener(silent, tail_lines=0).on_event(
        StepFailed("r", "x", 1, time.time(), 0.1, err, False, str(log))
    )
    assert "the clue" not in silent.getvalue()


def test_cli_picks_the_live_view_only_for_a_terminal(
    failing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.progress

    made: list[object] = []

    class Spy(flowkit.progress.LiveListener):
        def __init__(self, **kw: Any) -> None:
            made.append(self)
            from rich.console import Console

            super().__init__(Console(file=io.StringIO(), force_terminal=True), **kw)

    monkeypatch.setattr(flowkit.progress, "LiveListener", Spy)
    state = str(tmp_path / "st")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    for flags in (["--plain"], ["-q"], ["--log-format", "json"]):
        main(["run", f"{failing}:demo", "--state-dir", state, "--fresh", *flags])
    assert made == []
    main(["run", f"{failing}:demo", "--state-dir", state, "--fresh"])
    assert len(made) == 1


# --- flowkit logs --------------------------------------------------------------------------------


def test_logs_command_prints_the_captured_log(
    failing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "st")
    main(["run", f"{failing}:demo", "--plain", "--state-dir", state])
    capsys.readouterr()
    assert main(["logs", f"{failing}:demo", "broken", "--state-dir", state]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"{MARK}attempt started") or out.startswith(f"{MARK}attempt 1 started")
    assert "progress 1\n" in out and "progress 15\n" in out
    assert f"\n{MARK}attempt failed: ValueError: disk on fire ===\nTraceback" in out
    assert out.endswith("\nValueError: disk on fire\n")  # the traceback closes the attempt
    n = len(out.splitlines()) - out.splitlines().index("\x1b[1mbold\x1b[0m")
    assert main(["logs", f"{failing}:demo", "broken", "--state-dir", state, "--tail", str(n)]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == "\x1b[1mbold\x1b[0m"  # the file as written


def test_logs_command_exits_2_for_an_unknown_step_or_a_missing_log(
    failing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "st")
    assert main(["logs", f"{failing}:demo", "brokn", "--state-dir", state]) == 2
    _, err = capsys.readouterr()
    assert "no step named 'brokn'" in err and "Did you mean 'broken'?" in err
    assert main(["logs", f"{failing}:demo", "ok", "--state-dir", state]) == 2
    _, err = capsys.readouterr()
    assert "step 'ok' has no log in run demo" in err


# --- JSON logs and the logging bridge ------------------------------------------------------------


def test_json_log_format_is_one_json_object_per_line_even_when_steps_print(
    failing: Path, tmp_path: Path
) -> None:
    proc_ = subprocess.run(
        [PYTHON, "-m", "flowkit", "run", f"{failing}:demo", "--log-format", "json", "-w", "2"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc_.returncode == 1, proc_.stderr
    lines = proc_.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 6  # RunStarted, 2 x (StepStarted, its end), RunFinished
    for e in events:
        assert {"event", "run_id", "step", "attempt", "duration", "error"} <= e.keys()
    assert events[0]["event"] == "RunStarted" and events[-1]["event"] == "RunFinished"
    failed = next(e for e in events if e["event"] == "StepFailed")
    assert (failed["step"], failed["attempt"], failed["error"]) == (
        "broken",
        1,
        "ValueError: disk on fire",
    )
    assert isinstance(failed["duration"], float)
    assert "progress" not in proc_.stdout and "progress" not in proc_.stderr


def test_logging_listener_reaches_handlers_on_the_flowkit_logger(tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("flowkit")
    handler, old_level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        f = Flow("logged")

        @f.step()
        def fails() -> None:
            raise KeyError("k")

        f.run(state_dir=tmp_path / "st", listeners=[LoggingListener()])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    mine = [r for r in records if hasattr(r, "flowkit_event")]
    kinds = [type(r.flowkit_event).__name__ for r in mine]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and "StepFailed" in kinds
    failed = next(r for r in mine if isinstance(r.flowkit_event, StepFailed))
    assert failed.levelno == logging.ERROR and "fails" in failed.getMessage()


# --- the live view -------------------------------------------------------------------------------


def _recording_console() -> Any:
    rich_console = pytest.importorskip("rich.console")
    return rich_console.Console(
        record=True, force_terminal=True, width=100, file=io.StringIO(), color_system="truecolor"
    )


def _result(status: RunStatus) -> RunResult:
    return RunResult("demo", "r1", {}, {}, status, time.time(), 1.0, "")


def test_live_view_renders_progress_running_steps_and_finished_lines(tmp_path: Path) -> None:
    from flowkit.progress import LiveListener

    console = _recording_console()
    log = tmp_path / "c.log"
    invoke(lambda: print("why c failed"), {}, None, str(log), 1)
    t = time.time()
    live = LiveListener(console, refresh_per_second=50)
    live.on_event(RunStarted("r1", "demo", {}, 4, t, False))
    live.on_event(StepStarted("r1", "a", 1, t, "new"))
    live.on_event(StepStarted("r1", "b", 1, t, "new"))
    live.on_event(StepSucceeded("r1", "a", 1, t + 0.5, 0.5))
    err = ErrorInfo("ValueError", "first line\nthe last line")
    live.on_event(StepRetrying("r1", "b", 1, t + 0.6, err, 0.1))
    live.on_event(StepStarted("r1", "b", 2, t + 0.7, "retry"))
    live.on_event(StepCached("r1", "d", t, 0.2, 1))
    console.print(live.render())  # the live area as it is now
    area = console.export_text(clear=False)
    assert "2/4" in area and "ETA" in area
    assert re.search(r"▸\s+b\s+\S+\s+attempt 2", area)
    assert "✓ a" in area and "≡ d" in area
    assert "↻ b  attempt 1 the last line; retrying in 0.10s" in area
    live.on_event(StepFailed("r1", "c", 1, t + 1, 0.3, err, False, str(log)))
    live.on_event(RunFinished("r1", RunStatus.FAILED, t + 2, _result(RunStatus.FAILED)))
    text = console.export_text()
    assert "✗ c  failed (1 attempt, 300ms): ValueError: the last line" in text
    assert "│ why c failed" in text
    assert "Flow demo FAILED" in text and "Run the same command again" in text
    assert live._live is None  # stopped at RunFinished


def test_live_view_follows_a_real_run(tmp_path: Path) -> None:
    from flowkit.progress import LiveListener

    console = _recording_console()
    f = Flow("real")

    @f.step()
    def one() -> int:
        return 1

    @f.step()
    def two(one: int) -> int:
        return one + 1

    @f.step()
    def three(two: int) -> None:
        raise OSError("gone")

    with LiveListener(console) as live:
        f.run(state_dir=tmp_path / "st", listeners=[live])
    text = console.export_text()
    assert "✓ one" in text and "✓ two" in text and "✗ three" in text and "3/3" in text


def test_live_view_and_otel_name_their_extra_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowkit.otel import OtelListener
    from flowkit.progress import LiveListener

    monkeypatch.setitem(sys.modules, "rich.console", None)
    with pytest.raises(ExtraUnavailableError, match=r"flowkit\[rich\]"):
        LiveListener()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ExtraUnavailableError, match=r"flowkit\[otel\]"):
        OtelListener()


def test_import_flowkit_imports_neither_rich_nor_opentelemetry() -> None:
    code = (
        "import sys, flowkit, flowkit.cli, flowkit.listeners\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'opentelemetry')))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], env=flowkit_env(), capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_plain_output_of_a_subprocess_has_no_escape_codes(failing: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [PYTHON, "-m", "flowkit", "run", f"{failing}:demo"],  # stdout is a pipe: plain
        cwd=tmp_path,
        env=flowkit_env(TERM="xterm-256color", FORCE_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "[FAILED]    broken" in out.stdout and "| progress 15" in out.stdout
    assert not ANSI.search(out.stdout) and not ANSI.search(out.stderr)


# --- Flow.stream ---------------------------------------------------------------------------------


def _diamond() -> Flow:
    f = Flow("streamed")

    @f.step()
    def top() -> int:
        return 1

    @f.step()
    def left(top: int) -> int:
        time.sleep(0.02)
        return top + 1

    @f.step()
    def right(top: int) -> int:
        return top + 2

    @f.step()
    def join(left: int, right: int) -> int:
        return left + right

    return f


def test_stream_yields_events_in_a_valid_order(tmp_path: Path) -> None:
    f = _diamond()
    seen: list[Event] = []
    events = list(f.stream(state_dir=tmp_path / "st", workers=2, on_event=seen.append))
    assert events == seen  # the caller's on_event gets the same events
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, (RunStarted, RunFinished)) for e in events) == 2
    assert events[-1].result.ok and events[-1].result["join"].output == 5
    pos: dict[tuple[str, str], int] = {}
    for i, e in enumerate(events):
        if isinstance(e, (StepStarted, StepSucceeded)):
            pos[(type(e).__name__, e.step)] = i
    for step_, ups in {"left": ["top"], "right": ["top"], "join": ["left", "right"]}.items():
        for up in ups:
            assert pos[("StepSucceeded", up)] < pos[("StepStarted", step_)]
    for name in ("top", "left", "right", "join"):
        assert pos[("StepStarted", name)] < pos[("StepSucceeded", name)]
    again = list(f.stream(state_dir=tmp_path / "st"))
    assert [type(e) for e in again[1:-1]] == [StepCached] * 4


def test_stream_raises_the_runs_error_in_the_consumer(tmp_path: Path) -> None:
    with pytest.raises(UnknownParameterError):
        list(_diamond().stream({"nope": 1}, state_dir=tmp_path / "st"))


def test_stream_stopped_early_lets_the_run_finish(tmp_path: Path) -> None:
    f = _diamond()
    stream = f.stream(state_dir=tmp_path / "st")
    assert isinstance(next(stream), RunStarted)
    stream.close()
    for t in threading.enumerate():
        if t.name == "flowkit-stream-streamed":
            t.join(10)
    report = json.loads((tmp_path / "st" / "streamed" / "streamed" / "report.json").read_text())
    assert report["status"] == "succeeded"


# --- OpenTelemetry -------------------------------------------------------------------------------


def test_otel_listener_makes_a_span_per_run_and_per_attempt(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from flowkit.otel import OtelListener

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    f = Flow("traced")

    @f.step(retries=1, backoff=0.0)
    def flaky(ctx: Any) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("try again")
        return 1

    @f.step()
    def broken(flaky: int) -> int:
        raise ValueError("no")

    @f.step()
    def after(broken: int) -> None:
        return None

    f.run(state_dir=tmp_path / "st", listeners=[OtelListener(provider)])
    spans = {
        (s.name, s.attributes.get("flowkit.attempt") if s.attributes else None): s
        for s in exporter.get_finished_spans()
    }
    assert set(spans) == {
        ("run traced", None),
        ("step flaky", 1),
        ("step flaky", 2),
        ("step broken", 1),
    }
    run = spans[("run traced", None)]
    assert run.attributes is not None and run.attributes["flowkit.status"] == "failed"
    assert run.status.status_code is StatusCode.ERROR
    assert [e.attributes and e.attributes["flowkit.step"] for e in run.events] == ["after"]
    first, second, broken_ = (
        spans[("step flaky", 1)],
        spans[("step flaky", 2)],
        spans[("step broken", 1)],
    )
    for span in (first, second, broken_):
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.attributes is not None and span.attributes["flowkit.run_id"] == "traced"
    assert first.attributes is not None and first.attributes["flowkit.status"] == "retrying"
    assert first.attributes["flowkit.error"] == "ConnectionError: try again"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes is not None and second.attributes["flowkit.status"] == "succeeded"
    assert second.status.status_code is StatusCode.OK
    assert broken_.attributes is not None and broken_.attributes["flowkit.status"] == "failed"
    assert broken_.attributes["flowkit.error"] == "ValueError: no"
    assert [e.name for e in broken_.events] == ["exception"]
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time
