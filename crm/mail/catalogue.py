"""The email kinds crmflow ships: each one's class and the sample data it is checked with.

Every template in ``activities/templates`` is classed here as
``transactional`` (what a person needs about their account, ticket,
contract or approval; never suppressed by a marketing unsubscribe) or
``marketing`` (outreach a person can do without: lead follow-ups, nudges,
offers; carries one-click unsubscribe and honours it). ``check_shipped_templates``
renders each with its sample into both parts when the policy is loaded, so a
template that does not render, or reads a field its process does not give
it, stops the worker and API at start-up instead of failing when it is due.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crm.mail.layout import GMAIL_CLIP_BYTES, EmailParts, EmailPolicy, FooterLinks, compose

if TYPE_CHECKING:
    from activities.templates import EmailTemplates

EmailClass = Literal["transactional", "marketing"]

#: The class of every shipped template; a template missing here is refused at start-up.
EMAIL_CLASSES: dict[str, EmailClass] = {
    "welcome": "transactional",
    "onboarding_nudge": "marketing",
    "renewal_reminder": "transactional",
    "renewal_upsell_offer": "marketing",
    "renewal_confirmation": "transactional",
    "renewal_lapse_escalation": "transactional",
    "sla_warning": "transactional",
    "sla_breach": "transactional",
    "sla_escalation": "transactional",
    "approval_request": "transactional",
    "approval_escalation": "transactional",
    "lead_first_touch": "marketing",
    "lead_follow_up": "marketing",
    "lead_assigned": "transactional",
}

_SLA = {
    "recipient_name": "Tom Berg",
    "ticket_id": "t-1042",
    "subject": "Cannot export invoices",
    "priority": "high",
    "customer_id": "c-42",
    "clock_label": "first response",
    "target": "4h",
    "used": "3h 05m",
    "due_local": "2026-12-07 14:00",
    "timezone": "Europe/Stockholm",
    "percent_used": 77,
}
_RENEWAL = {
    "contact_name": "Ann Lee",
    "company_name": "Acme",
    "plan": "growth",
    "annual_value": "12,000.00",
    "renewal_date": "2027-03-01",
    "owner_name": "Ana Souza",
    "owner_email": "ana@crmflow.example",
}
_APPROVAL = {
    "approver_name": "Hana Mori",
    "requester_id": "ae-sam",
    "subject": "15% discount on the Acme renewal",
    "details": {"discount_percent": 15, "annual_value": "12,000.00"},
    "decide_by": "2026-12-09 17:00 UTC",
    "delegate_id": "fin-olga",
    "approval_id": "approval-s-77-term1-discount",
}

#: Sample merge fields of each shipped template: the fields its process gives it.
SAMPLES: dict[str, dict[str, Any]] = {
    "welcome": {
        "contact_name": "Ann Lee",
        "company_name": "Acme",
        "plan": "growth",
        "csm_name": "Ana Souza",
        "csm_email": "ana@crmflow.example",
        "milestones": ["account_configured", "first_value"],
    },
    "onboarding_nudge": {
        "contact_name": "Ann Lee",
        "company_name": "Acme",
        "day": 3,
        "missing": ["first_value"],
        "csm_name": "Ana Souza",
        "csm_email": "ana@crmflow.example",
    },
    "renewal_reminder": {**_RENEWAL, "days": 30, "auto_renew": False},
    "renewal_upsell_offer": {
        **_RENEWAL,
        "utilisation_percent": 92,
        "metric": "seats",
        "offered_plan": "scale",
        "discount_percent": 15,
    },
    "renewal_confirmation": {**_RENEWAL, "auto_renewed": True, "next_renewal_date": "2028-03-01"},
    "renewal_lapse_escalation": {
        **_RENEWAL,
        "manager_name": "Hana Mori",
        "subscription_id": "s-77",
    },
    "sla_warning": _SLA,
    "sla_breach": {**_SLA, "assignee_name": "Tom Berg", "reassigned_to": "Eva Lind"},
    "sla_escalation": {**_SLA, "assignee_name": "Tom Berg", "lead_name": "Eva Lind"},
    "approval_request": _APPROVAL,
    "approval_escalation": {**_APPROVAL, "previous_approver": "mgr-hana"},
    "lead_first_touch": {"name": "Ann Lee", "company": "Acme"},
    "lead_follow_up": {
        "name": "Ann Lee",
        "company": "Acme",
        "final": False,
        "number": 1,
        "total": 3,
    },
    "lead_assigned": {
        "rep_name": "Sam Ek",
        "grade": "high",
        "lead_name": "Ann Lee",
        "lead_email": "ann@acme-corp.io",
        "company": "Acme",
        "title": "VP Sales",
        "employees": 250,
        "country": "SE",
        "source": "webinar",
        "score": 72,
        "matched": ["title: vp", "employees >= 200"],
        "territory": "nordics",
        "reason": "score 72",
        "due": "2026-12-07 10:00 Europe/Stockholm",
        "task_id": 17,
    },
}

#: What the links of a sample rendering point at.
SAMPLE_LINKS = FooterLinks(
    preferences_url="https://crm.example.com/email/unsubscribe/sample",
    unsubscribe_url="https://crm.example.com/email/unsubscribe/sample",
)


def render_sample(
    name: str,
    policy: EmailPolicy,
    templates: EmailTemplates | None = None,
    overrides: dict[str, Any] | None = None,
) -> EmailParts:
    """Shipped template ``name`` rendered with its sample (``overrides`` on top) into both
    parts; raises activities.templates.TemplateError."""
    from activities.templates import EmailTemplates

    context = {**SAMPLES[name], **(overrides or {})}
    rendered = (templates or EmailTemplates()).render(name, context)
    marketing = EMAIL_CLASSES[name] == "marketing"
    links = SAMPLE_LINKS if marketing else FooterLinks(SAMPLE_LINKS.preferences_url)
    return compose(rendered.subject, rendered.body, policy, links)


def check_shipped_templates(policy: EmailPolicy, directory: Path | None = None) -> None:
    """Render every template in ``directory`` (the shipped ones by default) with its sample;
    raises ValueError naming each template that is unclassed, fails to render, or comes out
    larger than Gmail shows unclipped."""
    from activities.templates import TEMPLATE_DIR, EmailTemplates, TemplateError

    templates = EmailTemplates(directory or TEMPLATE_DIR)
    problems: list[str] = []
    for path in sorted((directory or TEMPLATE_DIR).glob("*.j2")):
        name = path.stem
        if name not in EMAIL_CLASSES or name not in SAMPLES:
            problems.append(f"{name}: not classed or without sample data (crm/mail/catalogue.py)")
            continue
        try:
            parts = render_sample(name, policy, templates=templates)
        except TemplateError as err:
            problems.append(f"{name}: {err}")
            continue
        size = len(parts.html.encode()) + len(parts.text.encode())
        if size > GMAIL_CLIP_BYTES:
            problems.append(f"{name}: {size} bytes, above the {GMAIL_CLIP_BYTES} Gmail shows")
    if problems:
        raise ValueError("email templates refused:\n  " + "\n  ".join(problems))
