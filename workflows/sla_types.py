"""The data a ticket's SLA exchanges: its input, its result and the data its events carry.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from crm.domain.sla import SlaTerms
from crm.domain.sla_policies import SlaPolicyBook, TicketFields
from crm.domain.ticket_clocks import OPEN, PENDING_CUSTOMER
from workflows.contracts import SlaClockOutcome

__all__ = [
    "EVENT_DATA",
    "EVENT_TYPES",
    "LEGACY_EVENT_DATA",
    "OPEN",
    "PENDING_CUSTOMER",
    "AgentReplied",
    "FieldsChanged",
    "PriorityChanged",
    "StatusChanged",
    "TicketInput",
    "TicketSlaResult",
    "TicketStatusChanged",
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


@dataclass
class AgentReplied:
    """The data of ``agent_replied``: a public reply (the default) stops the first-response
    and next-reply clocks and restarts the periodic update; an internal note stops none."""

    public: bool = True


@dataclass
class TicketStatusChanged:
    """The data of ``status_changed`` for a ticket under SLA policies: ``pending`` and
    ``on_hold`` pause the clocks whose policy says so, ``open`` resumes them, ``solved``
    ends the SLA; ``pending_customer`` is read as ``pending``."""

    status: Literal["open", "pending", "on_hold", "solved", "pending_customer"]


@dataclass
class FieldsChanged:
    """The data of ``fields_changed``: the ticket fields that changed (the rest stay); the
    ticket is matched to its policy again (none given: the same match, nothing changes).
    Raises ValueError for an empty priority."""

    priority: str | None = None
    tier: str | None = None
    group: str | None = None
    type: str | None = None
    tags: list[str] | None = None
    organization: str | None = None

    def __post_init__(self) -> None:
        if self.priority is not None and not self.priority.strip():
            raise ValueError("priority must not be empty")

    def changes(self) -> dict[str, Any]:
        """The fields given, by name."""
        return {name: value for name, value in vars(self).items() if value is not None}


#: The events a ticket SLA under policies accepts, each with the dataclass its data decodes
#: to (None: no data); the API takes these.
EVENT_DATA: dict[str, type | None] = {
    "customer_replied": None,
    "agent_replied": AgentReplied,
    "status_changed": TicketStatusChanged,
    "fields_changed": FieldsChanged,
    "priority_changed": PriorityChanged,
    "resolved": None,
    "closed": None,
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_DATA)

#: The events runs begun before SLA policies (``TicketClocks``) accept.
LEGACY_EVENT_DATA: dict[str, type | None] = {
    "agent_replied": None,
    "status_changed": StatusChanged,
    "priority_changed": PriorityChanged,
    "resolved": None,
    "closed": None,
}


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
    #: The SLA policies the ticket runs under; runs begun without run on ``terms`` alone.
    policies: SlaPolicyBook | None = None
    group: str | None = None
    type: str | None = None
    tags: list[str] = field(default_factory=list)
    organization: str | None = None

    def problems(self) -> list[str]:
        """Why the ticket cannot run: a missing id or priority, terms or policies that
        cannot time it."""
        missing = [
            f"{name} is required"
            for name in ("ticket_id", "customer_id", "priority")
            if not str(getattr(self, name)).strip()
        ]
        policies = self.policies.problems() if self.policies is not None else []
        return [*missing, *self.terms.problems_for(self.priority), *policies]

    def fields(self) -> TicketFields:
        """The fields SLA policies match the ticket on."""
        return TicketFields(
            priority=self.priority,
            tier=self.tier,
            group=self.group,
            type=self.type,
            tags=list(self.tags),
            organization=self.organization,
        )


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
