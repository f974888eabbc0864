"""A workflow's ``notifications:`` block, turned into notifiers when a run starts.

Each entry names a channel (``type: slack``) and its settings; templates in them (``{{ env.X }}``)
are rendered when the run starts, so secrets come from the environment, not the file. The
notifiers themselves are built by :func:`flowkit.notify.notifier_from_mapping`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["EVENTS", "channel_keys", "make_notifier"]

#: The run outcomes each block speaks about (as notifiers' ``on``).
EVENTS: dict[str, tuple[str, ...]] = {
    "on_success": ("succeeded",),
    "on_failure": ("failed", "timed_out", "interrupted"),
    "on_finish": ("always",),
}


def channel_keys() -> dict[str, tuple[str, ...]]:
    """The accepted keys of each channel type."""
    from .notify import NOTIFIER_KEYS

    return dict(NOTIFIER_KEYS)


def make_notifier(entry: Mapping[str, Any], on: Iterable[str], where: str) -> Notifier:
    """One notifier from a rendered entry; raises ValueError with a message for a bad entry."""
    from .notify import notifier_from_mapping

    return notifier_from_mapping(entry, on, where)
