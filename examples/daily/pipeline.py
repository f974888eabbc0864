"""The daily sales pipeline: fetch → transform → report → backup → deliver.

Run it from this folder:

    python -m flowkit run pipeline:daily --param date=2026-11-25

Everything it writes goes under ./out/ (and flowkit's state under ./.flowkit/).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from flowkit import Flow

HERE = Path(__file__).parent
OUT = Path(os.environ.get("DAILY_OUT", HERE / "out"))

daily = Flow("daily")


@daily.step(retries=2, backoff=0.5)
def fetch(date: str = "2026-11-25") -> list[dict[str, str]]:
    """Read the day's rows from the shipped CSV (stand-in for an API or a database)."""
    with open(HERE / "sales.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["date"] == date]


@daily.step()
def transform(fetch: list[dict[str, str]]) -> dict[str, float]:
    """Revenue per region."""
    totals: dict[str, float] = {}
    for row in fetch:
        revenue = int(row["units"]) * float(row["unit_price"])
        totals[row["region"]] = round(totals.get(row["region"], 0.0) + revenue, 2)
    return dict(sorted(totals.items()))


@daily.step()
def report(transform: dict[str, float], date: str = "2026-11-25") -> str:
    """Write a small text report; return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"report-{date}.txt"
    lines = [f"Sales report for {date}", ""]
    lines += [f"{region:<8} {total:>10.2f}" for region, total in transform.items()]
    lines += ["", f"{'total':<8} {sum(transform.values()):>10.2f}"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@daily.step(depends_on=["report"])
def backup(ctx, date: str = "2026-11-25") -> None:  # type: ignore[no-untyped-def]
    """Copy the report to the backup folder (order-only dependency on report)."""
    dest = OUT / "backup"
    dest.mkdir(parents=True, exist_ok=True)
    copied = shutil.copy2(OUT / f"report-{date}.txt", dest)
    ctx["backup_path"] = str(copied)


@daily.step()
def deliver(report: str, backup: None, ctx) -> str:  # type: ignore[no-untyped-def]
    """Drop the report in the outbox once it is written and backed up."""
    outbox = OUT / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    delivered = shutil.copy2(report, outbox)
    ctx.log.info("delivered %s (backup at %s)", delivered, ctx["backup_path"])
    return str(delivered)
