"""What a run is handed to listen to it: notifiers told apart from listeners, and the
listener whose span context travels with each attempt (tracing)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import FlowDefinitionError
from .events import ListenerLike

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["AttemptTracer", "notifiers_given", "split_notifiers", "tracer_of"]


@runtime_checkable
class AttemptTracer(Protocol):
    """A tracing listener (:class:`flowkit.otel.OtelListener`) as the engine sees it."""

    def attempt_context(self, step: str, attempt: int) -> dict[str, str] | None:
        """The context of the attempt's span, to make current where the attempt runs."""

    @property
    def trace_id(self) -> str | None:
        """The run's trace id (32 hex digits), once the run started."""


def notifiers_given(given: Iterable[Notifier] | Notifier, what: str) -> list[Notifier]:
    if not given:
        return []
    from .notify import Notifier  # only when used: `import flowkit` stays free of SMTP and HTTP

    if isinstance(given, Notifier):  # one notifier given without a list
        return [given]
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise FlowDefinitionError(
            f"{what} takes a list of notifiers (flowkit.notify.Slack, Email, PagerDuty, "
            f"Webhook), got {type(given).__name__}"
        )
    out = list(given)
    for x in out:
        if not isinstance(x, Notifier):
            raise FlowDefinitionError(
                f"{what} takes notifiers (flowkit.notify.Slack, Email, PagerDuty, Webhook), "
                f"got {type(x).__name__}"
            )
    return out


def tracer_of(listeners: Iterable[Any]) -> AttemptTracer | None:
    """The first listener that traces attempts (its span context travels with each attempt)."""
    for listener in listeners:
        if isinstance(listener, AttemptTracer):
            return listener
    return None


def split_notifiers(
    listeners: Iterable[ListenerLike], notify: list[Notifier]
) -> tuple[list[ListenerLike], list[Notifier]]:
    """The listeners that are not notifiers, and all notifiers (``notify`` + those listeners)."""
    given, notifiers = list(listeners), notify
    if "flowkit.notify" not in sys.modules:  # then no listener can be a notifier
        return given, notifiers
    from .notify import Notifier

    notifiers += [x for x in given if isinstance(x, Notifier)]
    return [x for x in given if not isinstance(x, Notifier)], notifiers
