"""Running a flow on a cron schedule, in the foreground: ``flowkit schedule TARGET --cron ...``.

No daemon and no server: one process waits for the next cron time, runs the flow, and waits
again (run it under systemd, a container or ``nohup``). Each firing is its own run by default,
named after the run's parameters and its scheduled time (``nightly-20261125T0200``): the
scheduled time and date can also be passed to a run parameter (``time_param`` / ``date_param``).
``run_per="day"`` makes the firings of a day share one run instead: the first does the work, and
later ones resume it (they run nothing unless something failed or changed).

Firings missed while the scheduler was down (a laptop asleep, a restart) are caught up by the
``catchup`` policy: ``latest`` (default) runs the most recent missed firing once, ``all`` runs
each, ``none`` skips them. The time of the last firing is recorded in the state folder
(``<state>/<flow>/schedule-<key>.json``) to know what was missed. Firings that come while the
previous run still runs follow the ``overlap`` policy: ``skip`` (default; each skipped firing is
logged) or ``queue`` (each runs, in order, once the previous run ends).

Time zones: a wall-clock time that does not exist (spring forward) fires at the first time after
the jump, as cron does; one that happens twice (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .definition import id_params
from .errors import ExtraUnavailableError, RunLockedError, StateWriteError, UsageError
from .flow import Flow
from .keys import run_id_for, safe_name
from .result import RunResult, RunStatus

__all__ = ["CATCHUP", "OVERLAP", "RUN_PER", "Schedule"]

#: How firings map to runs: each its own run, or one run per day.
RUN_PER = ("firing", "day")
#: Firings missed while the scheduler was down: the most recent once, each, or none.
CATCHUP = ("latest", "all", "none")
#: A firing while the previous run still runs: skipped, or run after it.
OVERLAP = ("skip", "queue")

log = logging.getLogger("flowkit")

#: Missed firings are counted up to this many (for the log) under --catchup latest/none.
_COUNT_BOUND = 10_000


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
        catchup: firings missed while the scheduler was down: ``"latest"`` (default) runs
            the most recent once, ``"all"`` runs each in order, ``"none"`` skips them.
        overlap: a firing due while the previous run still runs: ``"skip"`` (default, logged)
            or ``"queue"`` (run once the previous run ends).
        run_kwargs: passed to :meth:`Flow.run` (``options=RunOptions(...)``, or its fields as
            keywords: ``workers``, ``fail_fast``, ...; ``state_dir``, ``listeners``, ...).

    Raises:
        UsageError: the cron expression is invalid (the message shows it).
        ExtraUnavailableError: croniter is not installed (``pip install 'flowkit[cron]'``).
    """

    def __init__(
        self,
        flow: Flow,
        cron: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        time_param: str | None = None,
        date_param: str | None = None,
        tz: str | None = None,
        run_per: str = "firing",
        catchup: str = "latest",
        overlap: str = "skip",
        **run_kwargs: Any,
    ) -> None:
        if cron is None:
            cron = flow.schedule
        if cron is None:
            raise UsageError(
                f"flow {flow.name!r} has no schedule: pass --cron '0 2 * * *', or declare it "
                'with the flow (Flow(..., schedule="0 2 * * *"), or schedule: in a workflow file)'
            )
        if catchup not in CATCHUP:
            raise UsageError(f"catchup={catchup!r}: use one of {', '.join(CATCHUP)}")
        if overlap not in OVERLAP:
            raise UsageError(f"overlap={overlap!r}: use one of {', '.join(OVERLAP)}")
        self.catchup, self.overlap = catchup, overlap
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
        self.tz_name = tz or "UTC"
        self.run_kwargs = run_kwargs
        for name in (time_param, date_param):
            if name is not None:
                flow.resolve_params({**self.params, name: "2000-01-01"})  # a param steps take

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled time strictly after ``moment``, in UTC (aware datetimes that share
        a zone compare by wall clock, which is wrong across a DST change)."""
        nxt: datetime = self._croniter(self.cron, moment.astimezone(self.tz)).get_next(datetime)
        return nxt.astimezone(timezone.utc)

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
        return f"{run_id_for(self.flow.name, id_params(self.flow.graph(), given))}-{stamp}"

    @property
    def record_path(self) -> Path:
        """The file recording this schedule's last firing (in the flow's state folder)."""
        from .store import default_state_dir

        key = orjson.dumps(
            [self.cron, self.tz_name, self.params, self.run_per], option=orjson.OPT_SORT_KEYS
        )
        digest = hashlib.sha256(key).hexdigest()[:12]
        root = default_state_dir(self.run_kwargs.get("state_dir")) / safe_name(self.flow.name)
        return root / f"schedule-{digest}.json"

    def last_firing(self) -> datetime | None:
        """The scheduled time of the last firing recorded, or None (never fired, or unreadable)."""
        try:
            data = orjson.loads(self.record_path.read_bytes())
            return datetime.fromisoformat(data["last"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "flowkit: ignoring the schedule record %s (%s); no catch-up this time",
                self.record_path,
                exc,
            )
            return None

    def _record(self, due: datetime) -> None:
        path = self.record_path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = {"flow": self.flow.name, "cron": self.cron, "tz": self.tz_name}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps({**data, "last": due.isoformat()}))
            os.replace(tmp, path)
        except OSError as exc:
            raise StateWriteError(path, exc, "Make the state folder writable.") from None

    def missed(self, now: datetime) -> list[datetime]:
        """The firings after the recorded last one and up to ``now`` that the catch-up policy
        runs (oldest first); the others are logged as skipped."""
        last = self.last_firing()
        if last is None:
            return []
        first = self.next_after(last)
        if first > now:
            return []
        if self.catchup == "all":
            times: list[datetime] = []
            due = first
            while due <= now:
                if not times or not self._same_wall_time(times[-1], due):
                    times.append(due)
                due = self.next_after(due)
            return times
        # latest / none: the last firing due, and how many there were (counted up to a bound:
        # a minutely schedule down for a year must not take minutes to start)
        latest = self._croniter(self.cron, now.astimezone(self.tz)).get_prev(datetime)
        latest = latest.astimezone(timezone.utc)
        if self.next_after(latest) <= now:  # ``now`` is itself a firing time
            latest = self.next_after(latest)
        count, due = 0, first
        while due <= now and count < _COUNT_BOUND:
            count, due = count + 1, self.next_after(due)
        counted = f"{count}{'+' if count == _COUNT_BOUND else ''}"
        if self.catchup == "none" or count > 1:
            log.warning(
                "flowkit: %s firing(s) of %s missed while the scheduler was down (%s to %s); "
                "--catchup %s: %s",
                counted,
                self.flow.name,
                first.isoformat(),
                latest.isoformat(),
                self.catchup,
                "running the latest" if self.catchup == "latest" else "skipping them",
            )
        return [latest] if self.catchup == "latest" else []

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

        First the firings missed since the recorded last one (the ``catchup`` policy; none
        with ``run_now``, which fires at once instead). ``on_wait(due, seconds)`` is called
        before each wait for the next firing. ``now`` and ``sleep`` are the clock (injectable).

        Returns the exit code of the last run that was interrupted (130), else 0. A firing whose
        run is locked by another process is logged and skipped.
        """
        given = now or (lambda: datetime.now(self.tz))

        def clock() -> datetime:
            return given().astimezone(timezone.utc)

        fired = 0
        queue: list[datetime] = [clock()] if run_now else self.missed(clock())
        last: datetime | None = None
        while max_runs is None or fired < max_runs:
            if not queue:
                queue.append(self.next_after(max(clock(), last) if last else clock()))
            due = queue.pop(0)
            if last is not None and self._same_wall_time(last, due):
                last = due  # a wall-clock time repeated when clocks go back: fired once
                continue
            wait = (due - clock()).total_seconds()
            if wait > 0:
                log.info("flowkit: next run of %s at %s", self.flow.name, due.isoformat())
                if on_wait is not None:
                    on_wait(due, wait)
                sleep(wait)
            self._record(due)
            code = self._fire_logged(due, on_result)
            fired, last = fired + 1, due
            if code is not None:
                return code
            if not queue:
                queue = self._overlapped(due, clock())
        return 0

    def _same_wall_time(self, a: datetime, b: datetime) -> bool:
        """Two instants that show the same local clock reading (the hour repeated when the
        clocks go back)."""
        local = (a.astimezone(self.tz).replace(tzinfo=None), b.astimezone(self.tz))
        return a != b and local[0] == local[1].replace(tzinfo=None)

    def _fire_logged(
        self, due: datetime, on_result: Callable[[datetime, RunResult], None] | None
    ) -> int | None:
        try:
            result = self.fire(due)
        except RunLockedError as exc:
            log.warning("flowkit: firing at %s skipped: %s", due.isoformat(), exc)
            return None
        if on_result is not None:
            on_result(due, result)
        return 130 if result.status is RunStatus.INTERRUPTED else None

    def _overlapped(self, due: datetime, now: datetime) -> list[datetime]:
        """Firings that came while the run of ``due`` ran: queued, or logged as skipped."""
        came: list[datetime] = []
        nxt = self.next_after(due)
        while nxt <= now:
            if not self._same_wall_time(due, nxt):
                came.append(nxt)
            nxt = self.next_after(nxt)
        if self.overlap == "queue":
            return came
        for at in came:
            log.warning(
                "flowkit: firing of %s at %s skipped: the previous run was still running "
                "(--overlap skip; --overlap queue runs it afterwards)",
                self.flow.name,
                at.isoformat(),
            )
        return []


def _zone(tz: str | None) -> Any:
    if tz is None or tz.upper() == "UTC":
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(tz)
    except Exception:
        raise UsageError(f"--tz {tz!r} is not a known time zone (e.g. UTC, Europe/Paris)") from None
