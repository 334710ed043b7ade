"""What a ticket event does to the ticket's SLA clocks, for either kind of run.

Runs started with SLA policies keep ``PolicyClocks`` and take ``EVENT_DATA``'s
events; runs begun before keep ``TicketClocks`` and take ``LEGACY_EVENT_DATA``'s,
exactly as they did. Pure: the workflow's signal handler calls ``apply_event``
with ``workflow.now()``.
"""

from datetime import UTC, datetime

from crm.domain.policy_clocks import PolicyClocks
from crm.domain.ticket_clocks import TicketClocks
from workflows.common import ProcessEvent, event_data
from workflows.sla_types import (
    EVENT_DATA,
    LEGACY_EVENT_DATA,
    AgentReplied,
    FieldsChanged,
    PriorityChanged,
    StatusChanged,
    TicketStatusChanged,
)

Clocks = TicketClocks | PolicyClocks


def event_instant(occurred_at: datetime | None, floor: datetime, now: datetime) -> datetime:
    """When an event counts for the clocks: when it happened (``occurred_at``; an instant
    without an offset is UTC), but neither after ``now``, when it reached the run, nor
    before ``floor``, the latest instant the clocks were given (a level already acted on
    stays acted on); ``now`` when it does not say."""
    if occurred_at is None:
        return now
    if occurred_at.tzinfo is None:  # a signal sent around the API, without an offset
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return min(max(occurred_at, floor), now)


def apply_event(clocks: Clocks, event: ProcessEvent, now: datetime) -> str:
    """Apply ``event`` to ``clocks`` at ``now``; the reason it was ignored, or "" if applied."""
    if clocks.outcome is not None:
        return f"the ticket is already {clocks.outcome}"
    accepted = EVENT_DATA if isinstance(clocks, PolicyClocks) else LEGACY_EVENT_DATA
    if event.type not in accepted:
        return f"not a ticket event; accepted: {list(accepted)}"
    data_type = accepted[event.type]
    try:
        data = None if data_type is None else event_data(data_type, event)
    except (TypeError, ValueError) as err:
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        return f"data does not fit {event.type}: {err}{cause}"
    try:
        if isinstance(clocks, PolicyClocks):
            _apply_to_policy_clocks(clocks, event.type, data, now)
        else:
            _apply_to_ticket_clocks(clocks, event.type, data, now)
    except ValueError as err:  # a priority the ticket's terms do not know
        return str(err)
    return ""


def _apply_to_ticket_clocks(clocks: TicketClocks, name: str, data: object, now: datetime) -> None:
    if isinstance(data, StatusChanged):
        clocks.set_status(data.status, now)
    elif isinstance(data, PriorityChanged):
        clocks.change_priority(data.priority, now)
    elif name == "agent_replied":
        clocks.reply(now)
    elif name in ("resolved", "closed"):
        clocks.end(name, now)


def _apply_to_policy_clocks(clocks: PolicyClocks, name: str, data: object, now: datetime) -> None:
    if isinstance(data, AgentReplied):
        clocks.agent_replied(data.public, now)
    elif isinstance(data, TicketStatusChanged):
        clocks.set_status(data.status, now)
    elif isinstance(data, FieldsChanged):
        clocks.change_fields(data.changes(), now)
    elif isinstance(data, PriorityChanged):
        clocks.change_fields({"priority": data.priority}, now)
    elif name == "customer_replied":
        clocks.customer_replied(now)
    elif name in ("resolved", "closed"):
        clocks.end(name, now)
