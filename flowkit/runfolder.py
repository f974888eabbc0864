"""The run folder around a run: outputs without a journal set aside before it starts, and the
``end`` record, the snapshot and the report written when it ends."""

from __future__ import annotations

import logging
import time

from .outcomes import Outcomes
from .result import RunResult, json_params
from .store import RunStore

__all__ = ["finish", "set_aside_orphans"]

log = logging.getLogger("flowkit")


def set_aside_orphans(store: RunStore) -> None:
    """Outputs beside an empty or missing journal: move them aside rather than overwrite."""
    found = store.orphaned()
    if found:
        backup = store.dir.with_name(store.dir.name + ".previous")
        log.warning(
            "run folder %s has %s but its journal is %s: which steps finished is unknown, so "
            "the run starts over; the old files were moved to %s%s",
            store.dir,
            ", ".join(found),
            "empty" if store.exists() else "missing",
            backup,
            " (replacing what --fresh had left there)" if backup.exists() else "",
        )
        store.archive()


def finish(store: RunStore, steps: Outcomes, result: RunResult, started: float) -> None:
    """Journal the run's end, then write its snapshot (checked against the journal when next
    read) and its report."""
    counts = result.counts()
    steps.ledger.run_ended(result.status.value, time.time(), counts)
    store.write_snapshot(
        {
            "flow": steps.flow,
            "run_id": steps.run_id,
            "params": json_params(steps.params),
            "status": result.status.value,
            "started": started,
            "duration_s": result.duration_s,
            "counts": dict(counts),
            "steps": {n: r.status._value_ for n, r in steps.results.items()},
        }
    )
    store.write_report(result.to_json())
