"""Alerts when a run ends: Slack, e-mail, PagerDuty, or a signed JSON webhook.

Give notifiers to a flow (``Flow("daily", notify=[Slack(url)])``), to one run
(``flow.run(notify=[...])``), or on the command line (``--notify slack:URL``). When the run
ends, every notifier that wants its status is sent at once, each within its own deadline and with
a couple of retries; how each delivery went is logged on the ``flowkit`` logger and recorded in
the run's report. A delivery that fails never changes the run's outcome, and secrets (webhook
URLs, keys, passwords) never appear in messages, logs, reports or ``repr``.

Workflow files build notifiers with :func:`notifier_from_mapping` (:func:`entry_problems` checks an
entry's shape before its templates are rendered); :data:`NOTIFIER_KEYS` lists the keys each
``type`` accepts.
"""

from __future__ import annotations

from .base import PROBLEMS as PROBLEMS
from .base import Delivery as Delivery
from .base import Notifier as Notifier
from .base import run_summary as run_summary
from .deliver import alert as alert
from .deliver import deliver_all as deliver_all
from .email import Email as Email
from .pagerduty import PagerDuty as PagerDuty
from .pagerduty import dedup_key as dedup_key
from .spec import NOTIFIER_KEYS as NOTIFIER_KEYS
from .spec import NotifierEntryError as NotifierEntryError
from .spec import entry_problems as entry_problems
from .spec import notifier_from_mapping as notifier_from_mapping
from .spec import notifier_from_spec as notifier_from_spec
from .transport import DeliveryError as DeliveryError
from .webhook import SIGNATURE_HEADER as SIGNATURE_HEADER
from .webhook import Slack as Slack
from .webhook import Webhook as Webhook
from .webhook import sign as sign

__all__ = [
    "NOTIFIER_KEYS",
    "PROBLEMS",
    "SIGNATURE_HEADER",
    "Delivery",
    "DeliveryError",
    "Email",
    "Notifier",
    "NotifierEntryError",
    "PagerDuty",
    "Slack",
    "Webhook",
    "alert",
    "dedup_key",
    "deliver_all",
    "entry_problems",
    "notifier_from_mapping",
    "notifier_from_spec",
    "run_summary",
    "sign",
]
