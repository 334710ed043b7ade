"""The data a ticket's SLA exchanges: its input, its result and the data its events carry.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from crm.domain.sla import SlaTerms
from crm.domain.ticket_clocks import OPEN, PENDING_CUSTOMER
from workflows.contracts import SlaClockOutcome

__all__ = [
    "EVENT_DATA",
    "EVENT_TYPES",
    "OPEN",
    "PENDING_CUSTOMER",
    "PriorityChanged",
    "StatusChanged",
    "TicketInput",
    "TicketSlaResult",
    "sla_id",
]


@dataclass
class StatusChanged:
    """The data of ``status_changed``: ``pending_customer`` pauses both clocks, ``open`` resumes."""

    status: Literal["open", "pending_customer"]


@dataclass
class PriorityChanged:
    """The data of ``priority_changed``: the new priority, one of the SLA terms' (checked by
    the run); raises ValueError for an empty one."""

    priority: str

    def __post_init__(self) -> None:
        if not self.priority.strip():
            raise ValueError("priority must not be empty")


#: The events a ticket SLA accepts, each with the dataclass its data decodes to (None: no data).
EVENT_DATA: dict[str, type | None] = {
    "agent_replied": None,
    "status_changed": StatusChanged,
    "priority_changed": PriorityChanged,
    "resolved": None,
    "closed": None,
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_DATA)


@dataclass
class TicketInput:
    """A ticket that was opened; ``terms`` are the SLA terms of the customer's tier,
    ``created_at`` is when the helpdesk opened it (default: when the run starts) and
    the clocks count from then."""

    ticket_id: str
    customer_id: str
    subject: str
    priority: str
    terms: SlaTerms
    created_at: datetime | None = None
    tier: str | None = None
    skills: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Why the ticket cannot run: a missing id or priority, terms that cannot time it."""
        missing = [
            f"{name} is required"
            for name in ("ticket_id", "customer_id", "priority")
            if not str(getattr(self, name)).strip()
        ]
        return [*missing, *self.terms.problems_for(self.priority)]


@dataclass
class TicketSlaResult:
    """How the ticket's SLA ended (``resolved``, ``closed``) and what it took."""

    ticket_id: str
    outcome: str
    priority: str
    sla_state: str
    assignee_id: str | None
    clocks: list[SlaClockOutcome]
    escalations: list[dict[str, Any]]


def sla_id(ticket_id: str) -> str:
    """The workflow id of a ticket's SLA process, its business key."""
    return f"sla-{ticket_id}"
