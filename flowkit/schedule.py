"""Running a flow on a cron schedule, in the foreground: ``flowkit schedule TARGET --cron ...``.

No daemon and no server: one process waits for the next cron time, runs the flow, and waits
again (run it under systemd, a container or ``nohup``). Each firing is its own run, named after
its scheduled time (``daily-20261125T0200``), or bound to a run parameter with ``time_param`` /
``date_param`` so that the run id follows from the parameters as usual. A firing that finds its
run already done resumes it, which runs nothing. Firings missed while a run was going on (or
while the process was down) are not made up: the next one is the next cron time from now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import ExtraUnavailableError, RunLockedError, UsageError
from .flow import Flow
from .result import RunResult, RunStatus

__all__ = ["Schedule"]

log = logging.getLogger("flowkit")


class Schedule:
    """A flow, a cron expression and how each firing is parameterised.

    Args:
        flow: the flow to run.
        cron: a five-field cron expression (minute hour day month weekday), in UTC unless
            ``tz`` is given.
        params: run parameters for every firing.
        time_param / date_param: bind the firing's scheduled time (ISO, ``2026-11-25T02:00:00``)
            or date (``2026-11-25``) to this run parameter; without either, each firing gets the
            run id ``<flow>-<YYYYmmddTHHMM>``.
        run_kwargs: passed to :meth:`Flow.run` (``options=RunOptions(...)``, or its fields as
            keywords: ``workers``, ``fail_fast``, ...; ``state_dir``, ``listeners``, ...).

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
        **run_kwargs: Any,
    ) -> None:
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
        params = dict(self.params)
        run_id = None
        if self.time_param:
            params[self.time_param] = at.replace(tzinfo=None).isoformat(timespec="seconds")
        if self.date_param:
            params[self.date_param] = at.date().isoformat()
        if not (self.time_param or self.date_param):
            run_id = f"{self.flow.name}-{at.strftime('%Y%m%dT%H%M')}"
        return self.flow.run(params, run_id=run_id, **self.run_kwargs)

    def loop(
        self,
        *,
        max_runs: int | None = None,
        run_now: bool = False,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_result: Callable[[datetime, RunResult], None] | None = None,
    ) -> int:
        """Fire at every scheduled time until ``max_runs`` firings (forever when None).

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
