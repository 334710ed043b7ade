"""What processes emit to webhooks, and what the dispatch workflow and its activity exchange."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The activity that attempts an endpoint's due deliveries (``activities.webhook_delivery``).
DELIVER_DUE = "deliver_due"
#: The activity that emits a process's milestone event (``ActivitySteps._emit``).
EMIT_EVENT = "emit_event"
#: The signal that tells a dispatch workflow new deliveries are due.
WAKE = "wake"


def dispatch_id(endpoint_id: str) -> str:
    """The id of the workflow that delivers to ``endpoint_id``."""
    return f"webhooks-{endpoint_id}"


@dataclass
class DispatchInput:
    endpoint_id: str


@dataclass
class DeliveryRound:
    """Attempt the endpoint's deliveries due at ``now`` (the workflow's time)."""

    endpoint_id: str
    now: datetime


@dataclass
class RoundResult:
    """What a round did, and what is next.

    ``more`` says due deliveries were left for the next round; ``next_due``
    is the next pending delivery's time (None: none is pending);
    ``disabled_reason`` is set when the round disabled the endpoint, or it
    was disabled or deleted already (``stopped``), ``disabled_at`` when crmflow
    disabled it; ``tell`` the operator's address to email about it.
    """

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    more: bool = False
    next_due: datetime | None = None
    stopped: bool = False
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    url: str = ""
    tell: str | None = None


@dataclass
class DispatchSummary:
    """What a dispatch run (up to its continue-as-new) delivered."""

    rounds: int = 0
    delivered: int = 0
    failed: int = 0
    stopped: str | None = None


@dataclass
class MilestoneEvent:
    """A milestone a process reached, emitted once per ``event_id`` to the webhook endpoints
    of its tenant subscribed to ``type`` (``crm.domain.webhook_events``)."""

    event_id: str
    type: str
    process_id: str
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None


@dataclass
class MilestoneEmitted:
    """How many endpoints the event goes to."""

    endpoints: int
