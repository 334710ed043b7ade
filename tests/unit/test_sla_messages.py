"""workflows.sla_messages: what a ticket's warnings and escalations tell whom."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm.domain.calendar import CalendarSpec
from crm.domain.sla import FIRST_RESPONSE, RESOLUTION, SlaTargets, SlaTerms
from crm.domain.ticket_clocks import TicketClocks
from workflows import sla_messages as messages
from workflows.contracts import Assignment, StaffContact
from workflows.sla_types import TicketInput

MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("Europe/Stockholm"))
AGENT = Assignment(
    key="k",
    pool="support",
    assignee_id="agent-ann",
    assignee_name="Ann Agent",
    assignee_email="ann@example.com",
    manager_id="lead-lea",
    open_load=1,
)
LEAD = StaffContact("lead-lea", "Lea Lead", "lea@example.com", manager_id="mgr-max")
MANAGER = StaffContact("mgr-max", "Max Manager", "max@example.com", manager_id=None)


def alert(clock: str, due: datetime) -> messages.ClockAlert:
    """A normal ticket opened Monday 09:00 in Stockholm, as an escalation sees it at noon."""
    terms = SlaTerms(
        targets={"normal": SlaTargets(8 * 3600, 24 * 3600)},
        calendar=CalendarSpec(timezone="Europe/Stockholm"),
    )
    ticket = TicketInput("T-7", "c-42", "Printer on fire", "normal", terms)
    clocks = TicketClocks(terms, "normal", created_at=MONDAY_9, now=MONDAY_9)
    facts = clocks.email_facts(clock, due, MONDAY_9 + timedelta(hours=3))
    return messages.ClockAlert(ticket, AGENT.assignee_name, facts)


def test_the_warning_goes_to_the_assignee_with_the_clock_and_its_due_time() -> None:
    warning = alert(FIRST_RESPONSE, MONDAY_9 + timedelta(hours=8))
    email = messages.warning_email(warning, AGENT)
    assert (email.template, email.to) == ("sla_warning", "ann@example.com")
    assert email.context["recipient_name"] == "Ann Agent"
    assert email.context["ticket_id"] == "T-7"
    assert email.context["clock_label"] == "first response"
    assert messages.warning_notice(warning) == (
        f"Ticket T-7: first response due {email.context['due_local']}"
    )


def test_the_breach_goes_to_the_team_lead_and_names_the_new_assignee() -> None:
    breach = alert(RESOLUTION, MONDAY_9 + timedelta(hours=8))
    email = messages.breach_email(breach, LEAD, reassigned_to="Bo Backup")
    assert (email.template, email.to) == ("sla_breach", "lea@example.com")
    assert email.context["recipient_name"] == "Lea Lead"
    assert email.context["assignee_name"] == "Ann Agent"
    assert email.context["reassigned_to"] == "Bo Backup"
    task = messages.breach_task(breach, LEAD)
    assert task.assignee_id == "lead-lea"
    assert task.title == "SLA breached: ticket T-7 resolution"
    assert task.detail.startswith('normal ticket "Printer on fire" was due ')


def test_the_manager_hears_of_the_team_lead_and_the_level_reached() -> None:
    escalation = alert(RESOLUTION, MONDAY_9 + timedelta(hours=8))
    email = messages.manager_email(escalation, LEAD, MANAGER)
    assert (email.template, email.to) == ("sla_escalation", "max@example.com")
    assert email.context["recipient_name"] == "Max Manager"
    assert email.context["lead_name"] == "Lea Lead"
    task = messages.manager_task(escalation, LEAD, MANAGER)
    assert task.assignee_id == "mgr-max"
    assert task.title == "SLA escalation: ticket T-7 resolution at 150%"
    assert task.detail == "Team lead Lea Lead was notified at the breach."
