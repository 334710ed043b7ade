"""Types and helpers every process workflow shares: events, state, search attributes."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from temporalio.common import SearchAttributeKey
from temporalio.converter import value_to_type

PROCESS = SearchAttributeKey.for_keyword("CrmProcess")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
STAGE = SearchAttributeKey.for_keyword("CrmStage")
TICKET_PRIORITY = SearchAttributeKey.for_keyword("TicketPriority")
SLA_STATE = SearchAttributeKey.for_keyword("SlaState")
APPROVAL_ASSIGNEE = SearchAttributeKey.for_keyword("ApprovalAssignee")
AUTOMATION_ID = SearchAttributeKey.for_keyword("AutomationId")
AUTOMATION_VERSION = SearchAttributeKey.for_keyword("AutomationVersion")
RECORD_ID = SearchAttributeKey.for_keyword("RecordId")
#: The tenant whose run it is, on the runs of a tenant (the memo's ``tenant`` says the same).
TENANT = SearchAttributeKey.for_keyword("CrmTenant")

#: Custom search attributes every Temporal server running crmflow must know.
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    PROCESS,
    CUSTOMER_ID,
    STAGE,
    TICKET_PRIORITY,
    SLA_STATE,
    APPROVAL_ASSIGNEE,
    AUTOMATION_ID,
    AUTOMATION_VERSION,
    RECORD_ID,
    TENANT,
)


@dataclass
class ProcessEvent:
    """A business event sent to a running process (``type`` names what happened).

    ``occurred_at`` is when it happened in the system of record (the API sets the instant
    it received the event when the sender gives none); a ticket's SLA clocks count from it,
    not from when the run got to the signal. None on events sent before it existed.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


EventData = TypeVar("EventData")


def event_data(data_type: type[EventData], event: ProcessEvent) -> EventData:
    """``event.data`` decoded as ``data_type``, the dataclass its event type declares.

    The API validates an event's data against the same dataclass before it
    signals, so a run meets data that does not fit only from a signal sent
    around the API (Web UI, CLI). Raises TypeError or ValueError naming what
    does not fit.
    """
    decoded: EventData = value_to_type(data_type, event.data)
    return decoded


@dataclass
class StepEntry:
    """One step a process took, as shown by its ``state`` query."""

    step: str
    at: datetime
    detail: str = ""


@dataclass
class ProcessState:
    """Where a process stands: the answer of every process's ``state`` query."""

    process: str
    process_id: str
    customer_id: str
    stage: str
    waiting_for: list[str] = field(default_factory=list)
    due: dict[str, datetime] = field(default_factory=dict)
    steps: list[StepEntry] = field(default_factory=list)
    outcome: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
