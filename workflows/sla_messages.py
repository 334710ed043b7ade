"""What a ticket's SLA writes when a clock reaches a level: its emails, tasks and notifications.

Pure functions of the ticket, the people involved and the clock's facts as
``TicketClocks.email_facts`` gives them, so each escalation step of the
workflow is a few calls and each text can be read, and tested, on its own.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from crm.domain.sla import ClockMet
from crm.domain.sla_policies import LevelAction
from workflows.common import ProcessEvent
from workflows.contracts import Assignment, EmailRequest, StaffContact
from workflows.sla_types import TicketInput


@dataclass(frozen=True)
class ClockAlert:
    """One clock of a ticket as an escalation tells of it: the ticket, its assignee's
    name and ``facts`` (``TicketClocks.email_facts``: priority, clock label, target,
    time used, due time in the customer's zone)."""

    ticket: TicketInput
    assignee_name: str
    facts: Mapping[str, object]

    def context(self, **extra: object) -> dict[str, object]:
        """An escalation email's template context: the ticket, the facts, then ``extra``."""
        return {
            "ticket_id": self.ticket.ticket_id,
            "customer_id": self.ticket.customer_id,
            "subject": self.ticket.subject,
            **self.facts,
            "assignee_name": self.assignee_name,
            **extra,
        }


@dataclass(frozen=True)
class Email:
    """An escalation email: its template, recipient and template context."""

    template: str
    to: str
    context: dict[str, object]

    def request(self, key: str, process_id: str) -> EmailRequest:
        """The activity's input, sent once per ``key``."""
        return EmailRequest(
            key=key, process_id=process_id, to=self.to, template=self.template, context=self.context
        )


@dataclass(frozen=True)
class Task:
    """A task an escalation creates: for whom, its title and its detail."""

    assignee_id: str
    title: str
    detail: str


def warning_email(alert: ClockAlert, assignee: Assignment) -> Email:
    """The assignee's warning that the clock is at its warning level."""
    context = alert.context(recipient_name=assignee.assignee_name)
    return Email("sla_warning", assignee.assignee_email, context)


def warning_notice(alert: ClockAlert) -> str:
    """The assignee's in-app warning: which clock falls due when."""
    facts = alert.facts
    return f"Ticket {alert.ticket.ticket_id}: {facts['clock_label']} due {facts['due_local']}"


def breach_email(alert: ClockAlert, lead: StaffContact, reassigned_to: str | None) -> Email:
    """The team lead's email that the clock breached, naming the new assignee if moved."""
    context = alert.context(recipient_name=lead.name, reassigned_to=reassigned_to)
    return Email("sla_breach", lead.email, context)


def breach_task(alert: ClockAlert, lead: StaffContact) -> Task:
    """The team lead's task for a breached clock."""
    facts = alert.facts
    return Task(
        lead.staff_id,
        f"SLA breached: ticket {alert.ticket.ticket_id} {facts['clock_label']}",
        f'{facts["priority"]} ticket "{alert.ticket.subject}" was due {facts["due_local"]}.',
    )


def manager_email(alert: ClockAlert, lead: StaffContact, manager: StaffContact) -> Email:
    """The manager's email that the clock is at the manager level, naming the team lead."""
    context = alert.context(recipient_name=manager.name, lead_name=lead.name)
    return Email("sla_escalation", manager.email, context)


def manager_task(
    alert: ClockAlert, lead: StaffContact, manager: StaffContact, percent: int | None = None
) -> Task:
    """The manager's task for a clock at the manager level (``percent`` of its target; by
    default the terms' ``manager_at``)."""
    if percent is None:
        percent = round(alert.ticket.terms.manager_at * 100)
    return Task(
        manager.staff_id,
        f"SLA escalation: ticket {alert.ticket.ticket_id} {alert.facts['clock_label']} "
        f"at {percent}%",
        f"Team lead {lead.name} was notified at the breach.",
    )


def level_email(
    alert: ClockAlert,
    recipient: StaffContact,
    action: LevelAction,
    lead: StaffContact | None,
    reassigned_to: str | None,
) -> Email:
    """The email of a ladder level: a warning before the breach (to whomever it goes), the
    manager's escalation naming the team lead, else the breach naming any new assignee."""
    if action.before_breach:
        return Email("sla_warning", recipient.email, alert.context(recipient_name=recipient.name))
    if action.role == "manager" and lead is not None:
        return manager_email(alert, lead, recipient)
    return breach_email(alert, recipient, reassigned_to)


def level_task(
    alert: ClockAlert, recipient: StaffContact, action: LevelAction, lead: StaffContact | None
) -> Task:
    """The task of a ladder level: a reminder before the breach, the manager's escalation,
    else the breach's follow-up."""
    facts = alert.facts
    if action.before_breach:
        return Task(
            recipient.staff_id,
            f"SLA reminder: ticket {alert.ticket.ticket_id} {facts['clock_label']} "
            f"due {facts['due_local']}",
            f'{facts["priority"]} ticket "{alert.ticket.subject}" has used '
            f"{facts['percent_used']}% of its target.",
        )
    if action.role == "manager" and lead is not None:
        return manager_task(alert, lead, recipient, action.percent)
    return breach_task(alert, recipient)


def milestone(action: LevelAction, recipient: StaffContact, priority: str) -> dict[str, object]:
    """The data of the milestone a level emits: ``ticket.warning`` names the due time and
    the assignee, ``ticket.escalated`` the level and whom it reached."""
    if action.emit == "ticket.warning":
        return {
            "clock": action.clock,
            "due_at": action.due.isoformat(),
            "priority": priority,
            "assignee_id": recipient.staff_id,
        }
    return {"clock": action.clock, "level": action.level, "escalated_to": recipient.staff_id}


def met_milestone(met: ClockMet, priority: str, assignee_id: str) -> dict[str, object]:
    """The data of ``ticket.met``: the clock and its cycle, when it started and was met,
    and the business time it used of its target."""
    return {
        "clock": met.clock,
        "cycle": met.cycle,
        "started_at": met.started_at.isoformat(),
        "met_at": met.ended_at.isoformat(),
        "target_seconds": met.target.total_seconds(),
        "used_seconds": met.used.total_seconds(),
        "priority": priority,
        "assignee_id": assignee_id,
    }


def contact_of(assignee: Assignment) -> StaffContact:
    """The assignee as a level's recipient."""
    return StaffContact(
        assignee.assignee_id, assignee.assignee_name, assignee.assignee_email, assignee.manager_id
    )


def automation_record(
    ticket: TicketInput,
    priority: str,
    assignee_id: str,
    breached: list[str],
    clock: LevelAction | None = None,
) -> dict[str, object]:
    """The ticket as automations on ``crmflow.ticket`` (and ``ticket.*`` webhooks) see its
    outcome, or the breach of ``clock``: which clock breached, in which cycle (empty and 0
    for an outcome)."""
    return {
        "subject": ticket.subject,
        "priority": priority,
        "tier": ticket.tier or "",
        "assignee_id": assignee_id,
        "breached": bool(breached),
        "breached_clocks": breached,
        "clock": clock.clock if clock else "",
        "cycle": clock.cycle if clock else 0,
    }


def event_note(event: ProcessEvent) -> str:
    """How ``state`` shows an event the ticket took: its data as ``name=value``, by name."""
    return ", ".join(f"{name}={value}" for name, value in sorted(event.data.items()))


def reassigned_notice(ticket: TicketInput) -> str:
    """The new assignee's in-app notice after a breach moved the ticket to them."""
    return f"Ticket {ticket.ticket_id} was reassigned to you after an SLA breach."
