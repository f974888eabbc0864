"""Running a flow on a cron schedule, in the foreground: ``flowkit schedule TARGET --cron ...``.

No daemon and no server: one process waits for the next cron time, runs the flow, and waits
again (run it under systemd, a container or ``nohup``). Each firing is its own run by default,
named after the run's parameters and its scheduled time (``nightly-20261125T0200``): the
scheduled time and date can also be passed to a run parameter (``time_param`` / ``date_param``).
``run_per="day"`` makes the firings of a day share one run instead: the first does the work, and
later ones resume it (they run nothing unless something failed or changed). Firings missed while
a run was going on (or while the process was down) are not made up: the next one is the next
cron time from now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import ExtraUnavailableError, RunLockedError, UsageError
from .flow import Flow
from .keys import run_id_for
from .result import RunResult, RunStatus

__all__ = ["RUN_PER", "Schedule"]

#: How firings map to runs: each its own run, or one run per day.
RUN_PER = ("firing", "day")

log = logging.getLogger("flowkit")


class Schedule:
    """A flow, a cron expression and how each firing is parameterised.

    Args:
        flow: the flow to run.
        cron: a five-field cron expression (minute hour day month weekday), in UTC unless
            ``tz`` is given.
        params: run parameters for every firing.
        time_param / date_param: bind the firing's scheduled time (ISO, ``2026-11-25T02:00:00``)
            or date (``2026-11-25``) to this run parameter.
        run_per: ``"firing"`` (default): each firing is a run of its own, with the run id
            ``<flow run id>-<YYYYmmddTHHMM>``. ``"day"``: the firings of a day share a run,
            ``<flow run id>-<YYYYmmdd>``; with ``date_param``, the run id is the one its
            parameters give, the same as ``flowkit run --param <date_param>=<date>``.
        run_kwargs: passed to :meth:`Flow.run` (workers, state_dir, listeners, ...).

    Raises:
        UsageError: the cron expression is invalid (the message shows it).
        ExtraUnavailableError: croniter is not installed (``pip install 'flowkit[cron]'``).
    """

    def __init__(
        self,
        flow: Flow,
        cron: str,
        *,
        params: Mapping[str, Any] | None = None,
        time_param: str | None = None,
        date_param: str | None = None,
        tz: str | None = None,
        run_per: str = "firing",
        **run_kwargs: Any,
    ) -> None:
        if run_per not in RUN_PER:
            raise UsageError(
                f"run_per={run_per!r}: use 'firing' (each firing its own run) or 'day' (the "
                "firings of a day share one run)"
            )
        self.run_per = run_per
        try:
            from croniter import croniter
        except ImportError:
            raise ExtraUnavailableError("cron schedules", "cron", "croniter") from None
        if not croniter.is_valid(cron):
            raise UsageError(
                f"--cron {cron!r} is not a valid cron expression; use five fields: minute hour "
                "day-of-month month day-of-week, e.g. '0 2 * * *' (every day at 02:00)"
            )
        self.flow, self.cron, self._croniter = flow, cron, croniter
        self.params = dict(params or {})
        self.time_param, self.date_param = time_param, date_param
        self.tz = _zone(tz)
        self.run_kwargs = run_kwargs
        for name in (time_param, date_param):
            if name is not None:
                flow.resolve_params({**self.params, name: "2000-01-01"})  # a param steps take

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled time strictly after ``moment``."""
        nxt: datetime = self._croniter(self.cron, moment.astimezone(self.tz)).get_next(datetime)
        return nxt

    def fire(self, at: datetime) -> RunResult:
        """Run (or resume) the firing scheduled at ``at``."""
        return self.flow.run(self._params(at), run_id=self.run_id(at), **self.run_kwargs)

    def _params(self, at: datetime) -> dict[str, Any]:
        params = dict(self.params)
        at = at.astimezone(self.tz)
        if self.time_param:
            params[self.time_param] = at.replace(tzinfo=None).isoformat(timespec="seconds")
        if self.date_param:
            params[self.date_param] = at.date().isoformat()
        return params

    def run_id(self, at: datetime) -> str | None:
        """The run id of the firing scheduled at ``at`` (None: the one its parameters give)."""
        if self.run_per == "day" and self.date_param:
            return None
        given = self.flow.resolve_params(self._params(at))
        if self.run_per == "day" and self.time_param:
            given.pop(self.time_param)  # it differs between the firings that share the run
        stamp = at.astimezone(self.tz).strftime(
            "%Y%m%d" if self.run_per == "day" else "%Y%m%dT%H%M"
        )
        return f"{run_id_for(self.flow.name, given)}-{stamp}"

    def loop(
        self,
        *,
        max_runs: int | None = None,
        run_now: bool = False,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_result: Callable[[datetime, RunResult], None] | None = None,
        on_wait: Callable[[datetime, float], None] | None = None,
    ) -> int:
        """Fire at every scheduled time until ``max_runs`` firings (forever when None).

        ``on_wait(due, seconds)`` is called before each wait for the next firing.

        Returns the exit code of the last run that was interrupted (130), else 0. A firing whose
        run is locked by another process is logged and skipped.
        """
        clock = now or (lambda: datetime.now(self.tz))
        fired = 0
        due = clock() if run_now else self.next_after(clock())
        while max_runs is None or fired < max_runs:
            wait = (due - clock()).total_seconds()
            if wait > 0:
                log.info("flowkit: next run of %s at %s", self.flow.name, due.isoformat())
                if on_wait is not None:
                    on_wait(due, wait)
                sleep(wait)
            try:
                result = self.fire(due)
            except RunLockedError as exc:
                log.warning("flowkit: firing at %s skipped: %s", due.isoformat(), exc)
            else:
                if on_result is not None:
                    on_result(due, result)
                if result.status is RunStatus.INTERRUPTED:
                    return 130
            fired += 1
            due = self.next_after(max(clock(), due))
        return 0


def _zone(tz: str | None) -> Any:
    if tz is None or tz.upper() == "UTC":
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(tz)
    except Exception:
        raise UsageError(f"--tz {tz!r} is not a known time zone (e.g. UTC, Europe/Paris)") from None
