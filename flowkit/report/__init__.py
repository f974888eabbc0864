"""Run reports: one self-contained HTML page (or a few lines of text) describing a run.

The data comes from the run's journal (:class:`~flowkit.store.LoadedState`), read through
:mod:`flowkit.stepview`: :func:`collect` turns it into a :class:`RunReport` (one
:class:`StepRow` per step, in topological order, with the status the step has *in the latest
session*: a step restored from the journal is ``cached``) — :mod:`.model`;
:func:`render_text` summarises it — :mod:`.text`; :func:`render_html` draws it — :mod:`.html`,
with :mod:`.graph`, :mod:`.timeline` and :mod:`.trace` (tracebacks cut to the user's frames).
"""

from __future__ import annotations

from .graph import graph_svg
from .html import render_html, render_report_html, stylesheet
from .model import STATUSES, RunReport, StepRow, collect, step_rows
from .text import alert_line, render_text

__all__ = [
    "STATUSES",
    "RunReport",
    "StepRow",
    "alert_line",
    "collect",
    "graph_svg",
    "render_html",
    "render_report_html",
    "render_text",
    "step_rows",
    "stylesheet",
]
