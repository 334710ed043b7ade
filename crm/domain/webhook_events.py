"""The events webhooks deliver: their types, their payloads, and who subscribes to which.

Every built-in process emits an event at each of its outcomes
(``crm.domain.process_outcomes``): the type is ``<process>.<outcome>``
(``ticket.breached``, per clock, ``renewal.lapsed``, ``approval.approved``); and
at its milestones on the way (``MILESTONES``: ``ticket.warning``,
``ticket.escalated``, ``ticket.met`` (a clock's cycle ended within its target),
``approval.requested``, ``renewal.reminded``, ``lead.routed``, the milestones
the reports count (``onboarding.started``, ``.milestone_reached``,
``renewal.term_started``, ``.date_changed``, ``.upsell_offered``,
``.upsell_accepted``, ``lead.first_contacted``), an automation run's
``automation.enrolled`` and how it ended, a task's ``task.created`` and
``task.completed`` (by a person)), and the attention watch's
``attention.raised`` when an item joins the needs-attention list. An endpoint
subscribes to types or to patterns: ``ticket.*`` (every ticket event) or
``*`` (everything).

The body of a delivery follows the Standard Webhooks payload shape::

    {"type": "ticket.breached", "timestamp": "2026-12-04T09:30:00Z",
     "data": {"event_id": ..., "process_id": ..., <the outcome's fields>}}

Fields that identify a person or hold free text people wrote (``PERSONAL_FIELDS``:
names, email addresses, task titles, subjects and comments) are left out unless the
endpoint was created with ``personal_data: true``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm.domain.process_outcomes import OUTCOME_OBJECTS

#: The fields that identify a person (a task's title names whom to call), and free text
#: people wrote, which may (a ticket's subject, an approval's subject and the approver's
#: comment): sent only to endpoints configured to get them.
PERSONAL_FIELDS = frozenset(
    {"contact_name", "contact_email", "email", "name", "title", "subject", "comment"}
)

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "double": {"type": "number"},
    "bool": {"type": "boolean"},
    "timestamp": {"type": "string", "format": "date-time"},
    "list": {"type": "array"},
    "map": {"type": "object"},
}

_COMMON = {"process_id": "string", "customer_id": "string"}
_ONBOARDING = {**_COMMON, "plan": "string", "csm_id": "string"}
_TERM = {
    **_COMMON,
    "term": "int",
    "renewal_date": "timestamp",
    "plan": "string",
    "annual_value": "double",
    "owner_id": "string",
}
_AUTOMATION = {
    **_COMMON,
    "automation_id": "string",
    "version": "int",
    "object": "string",
    "record_id": "string",
    "has_goal": "bool",
}
_AUTOMATION_END = {**_AUTOMATION, "outcome": "string"}
_TASK = {
    **_COMMON,
    "task_id": "int",
    "kind": "string",
    "title": "string",
    "assignee_id": "string",
    "due_at": "timestamp",
}

#: The milestones processes emit on their way (``ActivitySteps._emit``), besides their
#: outcomes: ``type`` -> the fields of its data and their types.
MILESTONES: dict[str, dict[str, str]] = {
    "ticket.warning": {
        **_COMMON,
        "clock": "string",
        "due_at": "timestamp",
        "priority": "string",
        "assignee_id": "string",
    },
    "ticket.escalated": {**_COMMON, "clock": "string", "level": "string", "escalated_to": "string"},
    "ticket.met": {
        **_COMMON,
        "clock": "string",
        "cycle": "int",
        "started_at": "timestamp",
        "met_at": "timestamp",
        "target_seconds": "double",
        "used_seconds": "double",
        "priority": "string",
        "assignee_id": "string",
    },
    "approval.requested": {
        **_COMMON,
        "subject": "string",
        "requester_id": "string",
        "approver_id": "string",
        "decide_by": "timestamp",
    },
    "onboarding.started": _ONBOARDING,
    "onboarding.milestone_reached": {
        **_ONBOARDING,
        "milestone": "string",
        "seconds_since_start": "double",
    },
    "renewal.term_started": _TERM,
    "renewal.date_changed": {**_TERM, "previous_date": "timestamp"},
    "renewal.upsell_offered": {**_TERM, "offered_plan": "string", "discount_percent": "double"},
    "renewal.upsell_accepted": {**_TERM, "offered_plan": "string"},
    "renewal.reminded": {
        **_COMMON,
        "days_before": "int",
        "renewal_date": "timestamp",
        "term": "int",
    },
    "lead.routed": {**_COMMON, "owner_id": "string", "territory": "string", "reason": "string"},
    "lead.first_contacted": {**_COMMON, "channel": "string", "seconds_since_arrival": "double"},
    "task.created": _TASK,
    "task.completed": {**_TASK, "completed_by": "string"},
    "automation.enrolled": _AUTOMATION,
    "automation.completed": _AUTOMATION_END,
    "automation.goal_met": _AUTOMATION_END,
    "automation.cancelled": {**_AUTOMATION_END, "reason": "string"},
    "automation.step_failed": {**_AUTOMATION_END, "step": "string", "reason": "string"},
    "attention.raised": {
        "process_id": "string",
        "kind": "string",
        "subject": "string",
        "problem": "string",
        "since": "timestamp",
        "actions": "list",
    },
}

#: ``type`` -> (process, what happened, the fields of its data and their types): every
#: process's outcomes (``crm.domain.process_outcomes``) and its milestones.
EVENT_TYPES: dict[str, tuple[str, str, dict[str, str]]] = {
    **{
        f"{entry.process}.{outcome}": (entry.process, outcome, dict(entry.fields))
        for entry in OUTCOME_OBJECTS.values()
        for outcome in entry.outcomes
    },
    **{
        name: (name.partition(".")[0], name.partition(".")[2], fields)
        for name, fields in MILESTONES.items()
    },
}
PROCESSES = frozenset(process for process, _, _ in EVENT_TYPES.values())
#: Everything an endpoint may subscribe to: each type, each ``<process>.*``, and ``*``.
SUBSCRIBABLE: list[str] = ["*", *sorted(f"{p}.*" for p in PROCESSES), *sorted(EVENT_TYPES)]


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` subscribes to nothing; None for a type, ``<process>.*`` or ``*``."""
    if pattern == "*" or pattern in EVENT_TYPES:
        return None
    process, dot, rest = pattern.partition(".")
    if dot and rest == "*" and process in PROCESSES:
        return None
    if dot and rest == "*":
        return f"no process is named {process!r}: one of {', '.join(sorted(PROCESSES))}"
    return f"{pattern!r} is not an event type (GET /v1/webhooks/event-types), 'process.*' or '*'"


def subscribes(patterns: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``patterns`` gets events of ``event_type``."""
    process = event_type.partition(".")[0]
    return any(p in ("*", event_type, f"{process}.*") for p in patterns)


def payload(
    event_type: str,
    event_id: str,
    process_id: str,
    occurred_at: datetime,
    data: dict[str, Any],
    *,
    personal_data: bool,
) -> dict[str, Any]:
    """The body delivered for an event, without the personal fields unless ``personal_data``."""
    fields = {
        name: value for name, value in data.items() if personal_data or name not in PERSONAL_FIELDS
    }
    return {
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {**fields, "event_id": event_id, "process_id": process_id},
    }


def event_catalogue() -> dict[str, Any]:
    """A JSON Schema of every event type's payload, keyed by type."""
    catalogue: dict[str, Any] = {}
    for event_type, (process, outcome, fields) in sorted(EVENT_TYPES.items()):
        properties = {name: _JSON_TYPES[kind] for name, kind in fields.items()}
        personal = ", ".join(sorted(PERSONAL_FIELDS & set(fields)))
        catalogue[event_type] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": event_type,
            "description": f"The {process} process reached {outcome!r}. "
            + (
                f"Personal fields ({personal}) are sent only to endpoints with personal_data."
                if personal
                else "It holds no personal fields."
            ),
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event_type},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": {
                    "type": "object",
                    "required": ["event_id", "process_id"],
                    "properties": {
                        "event_id": {"type": "string"},
                        "process_id": {"type": "string"},
                        **properties,
                    },
                },
            },
        }
    return catalogue
