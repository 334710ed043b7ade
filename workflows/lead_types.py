"""The data of a lead's qualification: its input, its result, its events' data, its dossier.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter. ``LeadDossier`` is what a run
keeps of its lead; the records, views and emails made of it are pure, so a
replay builds them the same way.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from crm.domain.lead_scoring import LeadFacts, LeadScore
from crm.domain.leads import LeadEvents, LeadTerms, Territory, local_time_text, terms_problems
from workflows.contracts import Assignment, CompanyProfile, LeadRecord


@dataclass
class LeadInput:
    """A prospect who filled in a form; ``terms`` carry the policy and the lead's time zone."""

    lead_id: str
    email: str
    name: str
    source: str
    company: str | None = None
    title: str | None = None
    country: str | None = None
    terms: LeadTerms = field(default_factory=LeadTerms)

    def problems(self) -> list[str]:
        """What makes this input unusable for a run, one message each; empty when it is usable."""
        problems = [
            f"{name} is required"
            for name in ("lead_id", "name", "source")
            if not str(getattr(self, name)).strip()
        ]
        local, at, domain = self.email.partition("@")
        if not (local and at and "." in domain):
            problems.append(f"email {self.email!r} is not an email address")
        return [*problems, *terms_problems(self.terms)]


@dataclass
class LeadResult:
    """How qualification ended: ``qualified``, ``nurture``, ``unresponsive``,
    ``unsubscribed`` or ``bounced``; the score is the last one computed."""

    lead_id: str
    outcome: str
    score: int
    grade: str
    first_grade: str
    owner_id: str | None
    emails_sent: list[str]
    events: dict[str, datetime]


#: The dataclass each lead event's ``data`` decodes to, for every type of
#: ``crm.domain.leads.LEAD_EVENTS``. None for all of them: the run reads no data
#: of an event, it only keeps what came in the audit trail.
EVENT_DATA: dict[str, type | None] = {
    "replied": None,
    "meeting_booked": None,
    "unsubscribed": None,
    "bounced": None,
}


def lead_process_id(lead_id: str) -> str:
    """The workflow id of a lead's qualification, its business key."""
    return f"lead-{lead_id}"


@dataclass
class LeadDossier:
    """What a run knows of its lead: the form, the company, what the lead did, scores, rep.

    The workflow fills it in as its steps come back. The form's company name
    and country win over the company profile's.
    """

    lead: LeadInput
    company: CompanyProfile
    events: LeadEvents = field(default_factory=LeadEvents)
    scores: list[LeadScore] = field(default_factory=list)
    territory: Territory | None = None
    owner: Assignment | None = None
    emails_sent: list[str] = field(default_factory=list)
    do_not_email: str | None = None

    @classmethod
    def of(cls, lead: LeadInput) -> Self:
        """The dossier of a lead before enrichment: the company known only by its domain."""
        domain = lead.email.rpartition("@")[2].strip().lower()
        return cls(lead=lead, company=CompanyProfile(domain=domain, complete=False))

    @property
    def country(self) -> str | None:
        """The lead's country, upper-cased: the form's, else its company's."""
        return (self.lead.country or self.company.country or "").upper() or None

    @property
    def company_name(self) -> str | None:
        """The lead's company: the form's, else the company profile's name."""
        return self.lead.company or self.company.name

    @property
    def owner_id(self) -> str | None:
        """The rep the lead was routed to, if it was."""
        return self.owner.assignee_id if self.owner else None

    def facts(self) -> LeadFacts:
        """What scoring looks at: the form, the company and the engagement so far."""
        return LeadFacts(
            title=self.lead.title,
            industry=self.company.industry,
            source=self.lead.source,
            country=self.country,
            employees=self.company.employees,
            events=self.events.engagement(),
        )

    def record(self, process_id: str, status: str) -> LeadRecord:
        """The lead's CRM record, in ``status``, with the latest score."""
        score = self.scores[-1] if self.scores else None
        return LeadRecord(
            lead_id=self.lead.lead_id,
            process_id=process_id,
            email=self.lead.email,
            name=self.lead.name,
            source=self.lead.source,
            timezone=self.lead.terms.send_calendar.timezone,
            status=status,
            company=self.company_name,
            title=self.lead.title,
            country=self.country,
            industry=self.company.industry,
            employees=self.company.employees,
            score=score.points if score else None,
            grade=score.grade if score else None,
            owner_id=self.owner_id,
            email_valid="bounced" not in self.events.at,
        )

    def details(self) -> dict[str, object]:
        """The lead as the run's ``state`` query shows it."""
        score = self.scores[-1] if self.scores else None
        return {
            "source": self.lead.source,
            "score": score.points if score else None,
            "grade": score.grade if score else None,
            "matched_rules": list(score.matched) if score else [],
            "territory": self.territory.name if self.territory else None,
            "owner_id": self.owner_id,
            "emails_sent": list(self.emails_sent),
            "events": {name: at.isoformat() for name, at in self.events.at.items()},
            "do_not_email": self.do_not_email,
            "timezone": self.lead.terms.send_calendar.timezone,
            "enrichment_complete": self.company.complete,
        }

    def rep_briefing(
        self, rep: Assignment, territory: Territory, task_id: int, due: datetime, reason: str
    ) -> dict[str, object]:
        """What the email to the rep (template ``lead_assigned``) says of the lead it got."""
        score = self.scores[-1]
        return {
            "rep_name": rep.assignee_name,
            "territory": territory.name,
            "reason": reason,
            "lead_name": self.lead.name,
            "lead_email": self.lead.email,
            "title": self.lead.title,
            "company": self.company_name,
            "employees": self.company.employees,
            "country": self.country,
            "source": self.lead.source,
            "score": score.points,
            "grade": score.grade,
            "matched": list(score.matched),
            "due": local_time_text(due, territory.calendar.timezone),
            "task_id": task_id,
        }

    def outcome_record(self) -> dict[str, object]:
        """The lead as automations on ``crmflow.lead`` see it."""
        score = self.scores[-1] if self.scores else None
        return {
            "email": self.lead.email,
            "name": self.lead.name,
            "company": self.lead.company or "",
            "score": score.points if score is not None else 0,
            "grade": score.grade if score is not None else "",
            "owner_id": self.owner_id or "",
        }

    def result(self, outcome: str) -> LeadResult:
        """How the run ended: ``outcome``, the first grade and the last score."""
        last = self.scores[-1]
        return LeadResult(
            lead_id=self.lead.lead_id,
            outcome=outcome,
            score=last.points,
            grade=last.grade,
            first_grade=self.scores[0].grade,
            owner_id=self.owner_id,
            emails_sent=list(self.emails_sent),
            events=dict(self.events.at),
        )
