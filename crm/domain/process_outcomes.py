"""The built-in processes' outcomes, as record events automations can be triggered by.

When one of crmflow's own processes ends (and when a ticket breaches a clock
of its SLA), it offers its outcome to the tenant's automations as an event on
the object ``crmflow.<process>``, once (``ActivitySteps._offer_outcome``):
its ``type`` is the outcome (``breached`` for a breach), its ``record_id``
the process's business key and its ``record`` the fields below. An
automation on that object chains on the process ("when an onboarding
stalls, ...") exactly as one on a CRM object reacts to the system of
record; the API refuses such objects in ``POST /v1/records/events`` (their
names hold a dot), so only the processes post them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: The prefix of the objects the built-in processes publish their outcomes on.
PROCESS_OBJECT_PREFIX = "crmflow."


@dataclass(frozen=True)
class OutcomeObject:
    """What one process publishes: its outcomes, what its record id is, its record's fields."""

    process: str
    outcomes: tuple[str, ...]
    record_id: str
    fields: Mapping[str, str]  # field name -> a type of ``crm.domain.automation.FIELD_TYPES``

    @property
    def object(self) -> str:
        return PROCESS_OBJECT_PREFIX + self.process


_COMMON = {"process_id": "string", "customer_id": "string"}

OUTCOME_OBJECTS: dict[str, OutcomeObject] = {
    entry.object: entry
    for entry in (
        OutcomeObject(
            "onboarding",
            ("activated", "stalled", "cancelled"),
            "the customer id",
            {
                **_COMMON,
                "company_name": "string",
                "contact_name": "string",
                "contact_email": "string",
                "plan": "string",
                "csm_id": "string",
                "milestones": "list",
                "nudges_sent": "int",
            },
        ),
        OutcomeObject(
            "ticket",
            ("breached", "resolved", "closed", "cancelled"),
            "the ticket id",
            {
                **_COMMON,
                "subject": "string",
                "priority": "string",
                "tier": "string",
                "assignee_id": "string",
                "breached": "bool",
                "breached_clocks": "list",
                "clock": "string",  # the clock that breached; "" for an outcome
                "cycle": "int",  # its cycle (next reply: one per customer reply); 0 for one
            },
        ),
        OutcomeObject(
            "renewal",
            ("renewed", "auto_renewed", "lapsed", "cancelled"),
            "the subscription id",
            {
                **_COMMON,
                "company_name": "string",
                "contact_email": "string",
                "plan": "string",
                "annual_value": "double",
                "owner_id": "string",
                "renewal_date": "timestamp",
                "term": "int",
            },
        ),
        OutcomeObject(
            "lead",
            ("qualified", "nurture", "unresponsive", "unsubscribed", "bounced", "cancelled"),
            "the lead id",
            {
                **_COMMON,
                "email": "string",
                "name": "string",
                "company": "string",
                "score": "int",
                "grade": "string",
                "owner_id": "string",
            },
        ),
        OutcomeObject(
            "approval",
            ("approved", "rejected", "expired", "withdrawn"),
            "the approved subject's id",
            {
                **_COMMON,
                "subject": "string",
                "requester_id": "string",
                "decided_by": "string",
                "comment": "string",
            },
        ),
    )
}


#: The workflows that publish under another name than their own: the SLA workflow
#: (``sla-{ticket_id}``, process ``sla``) publishes a ticket's outcomes.
_PUBLISHES_AS = {"sla": "ticket"}


def published_as(process: str) -> str:
    """The name ``process`` (a workflow's process name) publishes its outcomes under: its
    object ``crmflow.<name>`` and webhook events ``<name>.<outcome>``."""
    return _PUBLISHES_AS.get(process, process)


def outcome_object(name: str) -> OutcomeObject | None:
    """The process that publishes on object ``name``; None for a CRM object."""
    return OUTCOME_OBJECTS.get(name)
