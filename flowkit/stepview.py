"""One step of a run as its journal tells it: the read side of the journal, in one place.

``flowkit status``, ``flowkit runs``, ``flowkit report`` and the dashboard all show "a step's
status in the latest session". They read it here: :func:`view_step` turns the records of a
:class:`~flowkit.store.LoadedState` (and, when read, the attempts of an
:class:`~flowkit.attempts.AttemptLog`) into a :class:`StepView`, and :func:`views_of` does so
for every step of a flow with its fan-out instances (``fetch[north]``) after it.

The status of a step in the latest session:

========================  =================================================================
``succeeded``/``failed``  its ``done`` record (``timed_out``, and ``skipped`` by ``when=``, too)
``cached``                restored in this session (a ``cached`` record), or a fan-out step
                          that only gathered restored instances
``skipped``               a ``skip`` record (a trigger rule, fail-fast)
``upstream_failed``       a ``skip`` record that says so
``running``               an attempt started and the run's process is alive
``retrying``              an attempt failed, and the next waits for its backoff
``interrupted``           started, never finished, and no process holds the run
``pending``               no record yet
========================  =================================================================

A step's ``duration`` is the time of its own attempts: the sum of each attempt's start to end
when the latest session's attempts are known (backoff waits are not the step's time), else what
its ``done`` record says. ``reason`` is whatever the journal says, as text.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .attempts import Attempt, AttemptLog
from .keys import safe_name
from .result import ErrorInfo
from .store import LoadedState, duration_of, skip_status

__all__ = [
    "FAILURES",
    "STEP_STATUSES",
    "StepView",
    "instances_of",
    "split_instance",
    "view_step",
    "views_of",
]

#: Every status a step can have in the latest session, in display order.
STEP_STATUSES = (
    "succeeded",
    "cached",
    "failed",
    "timed_out",
    "upstream_failed",
    "skipped",
    "running",
    "retrying",
    "interrupted",
    "pending",
)

#: The statuses of a step that did not get its work done.
FAILURES = frozenset({"failed", "timed_out", "interrupted"})

#: The reason of a restored step, before what it ran for.
CACHED_REASON = "unchanged; earlier result reused"


def split_instance(name: str) -> tuple[str, str | None]:
    """``fetch[north]`` -> ``("fetch", "north")``; a plain step name -> ``(name, None)``."""
    if name.endswith("]"):
        i = name.find("[")
        if i > 0:
            return name[:i], name[i + 1 : -1]
    return name, None


def instances_of(steps: Collection[str], state: LoadedState) -> dict[str, list[str]]:
    """The fan-out instances the journal names, by step of ``steps``, in journal order."""
    out: dict[str, list[str]] = {}
    for name in dict.fromkeys([*state.steps, *state.session]):
        if name in steps:
            continue
        base, label = split_instance(name)
        if label is not None and base in steps:
            out.setdefault(base, []).append(name)
    return out


@dataclass(frozen=True, slots=True)
class StepView:
    """A step (or a fan-out instance) as the latest session of its run left it."""

    name: str
    status: str
    parent: str | None = None  # the step a fan-out instance belongs to
    label: str | None = None  # the instance's label: ``north`` in ``fetch[north]``
    attempts: int | None = None  # how many attempts its record (or the running one) counts
    tries: tuple[Attempt, ...] = ()  # each attempt of the latest session, with its times
    duration: float | None = None  # its own attempts' time, in seconds
    cpu: float | None = None
    peak_rss: int | None = None
    start: float | None = None
    end: float | None = None
    worker: str | None = None  # where its last attempt ran
    key: str | None = None  # its cache key
    reason: str = ""
    error: ErrorInfo | None = None
    retried: tuple[tuple[int, str, float], ...] = ()  # (attempt, error, delay) of retried ones
    earlier: bool = False  # its record is from an earlier session, which the latest left alone
    log: Path | None = None  # its log file, when it has one

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    @property
    def ran(self) -> bool:
        """Executed in the latest session, with a known start."""
        return self.start is not None and self.status != "cached" and not self.earlier


def view_step(
    name: str,
    state: LoadedState,
    *,
    running: bool = False,
    tries: Sequence[Attempt] = (),
    parent: str | None = None,
    logs: Path | None = None,
) -> StepView:
    """What the journal says of step ``name`` in the latest session.

    Args:
        state: the run's loaded journal.
        running: a process holds the run now (a started step is ``running``, not
            ``interrupted``).
        tries: the step's attempts in the latest session (``AttemptLog.by_step[name]``).
        parent: set for a fan-out instance: the step it belongs to.
        logs: the run's log folder: ``log`` is set when the step has a log there.
    """
    label = split_instance(name)[1] if parent is not None else None
    base: dict[str, Any] = {
        "name": name,
        "parent": parent,
        "label": label,
        "tries": tuple(replace(t) for t in tries),
        "retried": tuple(
            (
                _int(x.get("attempt")) or 0,
                _error_text(x.get("error")),
                _num(x.get("delay")) or 0.0,
            )
            for x in state.retries.get(name, ())
        ),
    }
    if logs is not None:
        log = logs / f"{safe_name(name)}.log"
        base["log"] = log if log.is_file() else None
    header = state.headers[-1] if state.headers else {}
    done = state.steps.get(name)
    sess = state.session.get(name)
    ev = sess.get("ev") if sess is not None else None
    if sess is not None and ev == "start":
        waiting = bool(tries) and tries[-1].status in ("failed", "timed_out")
        status = ("retrying" if waiting else "running") if running else "interrupted"
        return StepView(
            status=status,
            attempts=_int(sess.get("attempt", 1)),
            start=_num(sess.get("time")),
            worker=tries[-1].worker if tries else None,
            reason="started, never finished" if not running else "",
            **base,
        )
    if sess is not None and ev == "skip":
        return StepView(status=skip_status(sess), reason=str(sess.get("reason", "")), **base)
    if done is None:
        finished = state.end is not None
        return StepView(status="pending", reason="not reached" if finished else "", **base)
    err = done.get("error")
    status = str(done.get("status", "pending"))
    # a step that ran for the first time has no reason in its record: "new" is the default
    reason = str(done.get("reason") or ("new" if status == "succeeded" else ""))
    earlier = False
    duration = duration_of(done)
    if sess is not None and ev == "cached":
        status = "cached"
        reason = CACHED_REASON + (f" (it ran: {reason})" if reason else "")
    else:
        started = _num(header.get("time"))
        end = _num(done.get("end"))
        earlier = started is not None and end is not None and end < started
        if tries and not earlier:
            duration = _own_time(tries) if _placed(tries) else duration
    worker = done.get("worker")
    return StepView(
        status=status,
        attempts=_int(done.get("attempts")),
        duration=duration,
        cpu=_num(done.get("cpu")),
        peak_rss=_int(done.get("peak_rss")),
        start=_num(done.get("start")),
        end=_num(done.get("end")),
        worker=str(worker) if worker is not None else None,
        key=str(done["key"]) if done.get("key") is not None else None,
        reason=reason,
        error=ErrorInfo.from_json(err) if isinstance(err, Mapping) else None,
        earlier=earlier,
        **base,
    )


def views_of(
    order: Iterable[str],
    state: LoadedState,
    *,
    running: bool = False,
    attempts: AttemptLog | None = None,
    logs: Path | None = None,
) -> list[tuple[StepView, list[StepView]]]:
    """Each step of ``order`` with the views of its fan-out instances (in journal order).

    A fan-out step that succeeded by gathering only restored (or skipped) instances is
    ``cached``: nothing of it ran in the latest session. Arguments are as for
    :func:`view_step`; ``attempts`` gives each step's tries.
    """
    names = list(order)
    fanned = instances_of(set(names), state)
    by_step = attempts.by_step if attempts is not None else {}
    out: list[tuple[StepView, list[StepView]]] = []
    for name in names:
        subs = [
            view_step(i, state, running=running, tries=by_step.get(i, ()), parent=name, logs=logs)
            for i in fanned.get(name, ())
        ]
        view = view_step(name, state, running=running, tries=by_step.get(name, ()), logs=logs)
        out.append((gathered(view, subs), subs))
    return out


def gathered(view: StepView, instances: Sequence[StepView]) -> StepView:
    """A fan-out step's view given its instances': ``cached`` when it only gathered restored
    (or skipped) instances."""
    statuses = {s.status for s in instances}
    if view.status == "succeeded" and "cached" in statuses and statuses <= {"cached", "skipped"}:
        return replace(view, status="cached")
    return view


def _placed(tries: Sequence[Attempt]) -> bool:
    return all(t.start is not None and t.end is not None for t in tries)


def _own_time(tries: Sequence[Attempt]) -> float | None:
    """The time of the attempts themselves (the waits between them left out)."""
    spans = [t.end - t.start for t in tries if t.start is not None and t.end is not None]
    return max(0.0, sum(spans)) if spans else None


def _error_text(err: Any) -> str:
    return str(ErrorInfo.from_json(err)) if isinstance(err, Mapping) else ""


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None
