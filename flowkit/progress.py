"""A live terminal view of a run, drawn with ``rich`` (extra ``flowkit[rich]``).

:class:`LiveListener` keeps a progress bar (done/total, elapsed, ETA) and the steps running now
(with their attempt and elapsed time) at the bottom of the terminal, and prints each finished step
above it; a failure is printed with its error's last line and the last lines of the step's log.
``rich`` is imported only when a ``LiveListener`` is made: ``import flowkit`` never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capture import tail
from .errors import ExtraUnavailableError
from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from .listeners import log_path_of
from .result import RunStatus, Status, fmt_duration
from .result import shown as escaped

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.progress import Progress, TaskID

__all__ = ["LiveListener", "rich_available"]


def rich_available() -> bool:
    """Whether ``rich`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("rich") is not None
    except (ImportError, ValueError):
        return False


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


class LiveListener:
    """A progress bar and the running steps, redrawn in place; finished steps scroll above.

    Args:
        console: the ``rich.console.Console`` to draw on (default: a new one on stdout).
        logs_dir: where step logs are (``RunStore.logs``), for failures' last lines when the
            event carries no ``log_path``.
        tail_lines: how many lines of a failed step's log to show (0: none).
        max_running: at most this many running steps are listed (the rest are counted).
        refresh_per_second: how often the view is redrawn.

    Call :meth:`close` (or use it as a context manager) if the run may raise before it ends:
    the view stops by itself on ``RunFinished``.

    Raises:
        ExtraUnavailableError: ``rich`` is not installed.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        logs_dir: str | os.PathLike[str] | None = None,
        tail_lines: int = 10,
        max_running: int = 8,
        refresh_per_second: float = 8.0,
    ) -> None:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            raise ExtraUnavailableError("the live view", "rich", "rich") from None
        self.console: Console = console if console is not None else Console()
        self.logs_dir = Path(logs_dir) if logs_dir is not None else None
        self.tail_lines = tail_lines
        self.max_running = max_running
        self.refresh_per_second = refresh_per_second
        self.progress: Progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("•"),
            TimeElapsedColumn(),
            TextColumn("• ETA"),
            TimeRemainingColumn(),
            console=self.console,
            auto_refresh=False,
        )
        self._task: TaskID | None = None
        self._live: Live | None = None
        self.total = 0
        self.done = 0
        #: step -> (attempt, started, note)
        self.running: dict[str, tuple[int, float, str]] = {}
        self._seen: set[str] = set()
        self._run_started: float | None = None

    # --- the view -------------------------------------------------------------------------------

    def render(self) -> RenderableType:
        """What the live area shows now: the progress bar, then the running steps."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[RenderableType] = [self.progress.get_renderable()]
        if self.running:
            table = Table.grid(padding=(0, 2))
            table.add_column(no_wrap=True)
            table.add_column(no_wrap=True, overflow="ellipsis", max_width=48)
            table.add_column(no_wrap=True, justify="right")
            table.add_column(no_wrap=True)
            now = time.time()
            shown = sorted(self.running.items(), key=lambda kv: kv[1][1])
            for name, (attempt, started, note) in shown[: self.max_running]:
                table.add_row(
                    Text("  ▸", style="cyan"),
                    Text(escaped(name)),
                    Text(fmt_duration(max(0.0, now - started)), style="dim"),
                    Text(f"attempt {attempt}" + (f" ({note})" if note else ""), style="dim"),
                )
            parts.append(table)
            hidden = len(shown) - self.max_running
            if hidden > 0:
                parts.append(Text(f"    … and {hidden} more running", style="dim"))
        return Group(*parts)

    def _start(self, total: int) -> None:
        from rich.live import Live

        self.close()
        self.total, self.done = total, 0
        self.running.clear()
        self._seen.clear()
        for task in list(self.progress.tasks):
            self.progress.remove_task(task.id)
        self._task = self.progress.add_task("Running", total=max(total, 1))
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=self.refresh_per_second,
            transient=True,
        )
        self._live.start()
        # keep the cursor: a second Ctrl-C ends the process at once (os._exit), and a cursor
        # hidden then would stay hidden in the user's shell
        self.console.show_cursor(True)

    def close(self) -> None:
        """Stop redrawing (idempotent); the live area is cleared."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def __enter__(self) -> LiveListener:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _line(self, mark: str, style: str, name: str, detail: str = "") -> None:
        from rich.text import Text

        text = Text.assemble((f"{mark} ", style), (escaped(name), "bold"))
        if detail:
            text.append(f"  {detail}", style="dim" if style != "red" else "")
        self.console.print(text, soft_wrap=True)

    def _count(self, name: str) -> None:
        """``name`` finished: advance the bar (fan-out instances add to the total)."""
        self.running.pop(name, None)
        if name not in self._seen and "[" in name:
            self.total += 1
        self._seen.add(name)
        self.done += 1
        self.total = max(self.total, self.done)
        if self._task is not None:
            self.progress.update(self._task, completed=self.done, total=max(self.total, 1))
        if self._live is not None:
            self._live.refresh()

    # --- events ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_started = event.time
            how = "resuming" if event.resumed else "starting"
            self._start(event.total)
            self._line("▶", "cyan", f"Flow {event.flow}", f"{how} run {event.run_id}")
        elif isinstance(event, StepStarted):
            if event.step not in self._seen and "[" in event.step:
                self._seen.add(event.step)
                self.total += 1
                if self._task is not None:
                    self.progress.update(self._task, total=self.total)
            self.running[event.step] = (event.attempt, event.time, "")
        elif isinstance(event, StepRetrying):
            what = "timed out" if event.timed_out else _last_line(str(event.error))
            self._line(
                "↻",
                "yellow",
                event.step,
                f"attempt {event.attempt} {what}; retrying in {event.delay_s:.2f}s",
            )
            attempt, started, _ = self.running.get(event.step, (event.attempt, event.time, ""))
            self.running[event.step] = (attempt, started, "retry pending")
        elif isinstance(event, StepSucceeded):
            self._count(event.step)
            attempts = "" if event.attempts == 1 else f", {event.attempts} attempts"
            why = f", {event.reason}" if event.reason not in ("", "new") else ""
            self._line("✓", "green", event.step, f"{fmt_duration(event.duration_s)}{attempts}{why}")
        elif isinstance(event, StepCached):
            self._count(event.step)
            self._line("≡", "blue", event.step, "cached")
        elif isinstance(event, StepSkipped):
            self._count(event.step)
            if event.status is Status.UPSTREAM_FAILED:
                self._line("⊘", "red", event.step, f"upstream_failed: {event.reason}")
            else:
                self._line("-", "dim", event.step, f"skipped: {event.reason}")
        elif isinstance(event, StepFailed):
            self._count(event.step)
            self._failed(event)
        elif isinstance(event, RunFinished):
            self.close()
            result = event.result
            style = "green" if result.status is RunStatus.SUCCEEDED else "red"
            self.console.print(result.summary(), style=style, markup=False, highlight=False)
            if result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.TIMED_OUT):
                self.console.print(
                    "Run the same command again to resume: finished steps are restored, "
                    "not re-run. Add --fresh to start over.",
                    markup=False,
                    highlight=False,
                )

    def _failed(self, event: StepFailed) -> None:
        from rich.text import Text

        label = "timed out" if event.timed_out else "failed"
        attempts = f"{event.attempts} attempt{'s' if event.attempts != 1 else ''}"
        message = _last_line(event.error.message)
        error = f"{event.error.type}: {message}" if message else event.error.type
        self._line(
            "✗",
            "red",
            event.step,
            f"{label} ({attempts}, {fmt_duration(event.duration_s)}): {error}",
        )
        path = log_path_of(event, self.logs_dir)
        if path is None or self.tail_lines <= 0:
            return
        lines = tail(path, self.tail_lines, since=self._run_started)
        if lines:
            shown = [f"    last lines of its log ({path}):", *(f"    │ {x}" for x in lines)]
            self.console.print(Text("\n".join(shown), style="dim"), soft_wrap=True)
