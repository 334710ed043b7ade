"""Names and data types of the activities that workflows call.

Workflows import this module, never the activity implementations, so that no
I/O library is loaded into the workflow sandbox. Every activity takes exactly
one input dataclass and returns one dataclass, so fields can be added later
without breaking histories of runs in flight.

Every side-effecting request carries an idempotency ``key`` built by the
workflow from its id and the step name (``step_key``); the activity stores it
under a unique constraint, so a retried attempt finds the earlier effect
instead of repeating it.

Modules that define payload types do without ``from __future__ import
annotations``: the SDK's converter reads a dataclass's type hints for every
payload it decodes, and string annotations are evaluated anew each time
(``tests/unit/test_wire_types.py``).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workflows.webhook_types import MilestoneEvent

ENRICH_COMPANY = "enrich_company"
ASSIGN_OWNER = "assign_owner"
RELEASE_ASSIGNMENT = "release_assignment"
CREATE_TASK = "create_task"
CLOSE_TASKS = "close_tasks"
TASK_STATUS = "task_status"
SEND_EMAIL = "send_email"
RECORD_STEP = "record_step"
UPSERT_CUSTOMER = "upsert_customer"
LOOK_UP_STAFF = "look_up_staff"
NOTIFY_STAFF = "notify_staff"
RECORD_LEVEL = "record_level"
RECORD_SLA_OUTCOME = "record_sla_outcome"
ANALYSE_USAGE = "analyse_usage"
SAVE_LEAD = "save_lead"
ADD_TO_MARKETING_LIST = "add_to_marketing_list"
OFFER_OUTCOME = "offer_outcome"


def step_key(process_id: str, step: str) -> str:
    """The idempotency key of one step of one process: ``{process_id}/{step}``."""
    return f"{process_id}/{step}"


@dataclass
class EnrichmentRequest:
    """Look up a company by the domain of a contact's email address."""

    domain: str


@dataclass
class CompanyProfile:
    """What is known about a company; ``complete`` is False for partial data."""

    domain: str
    name: str | None = None
    industry: str | None = None
    employees: int | None = None
    size_band: str | None = None
    country: str | None = None
    complete: bool = True


@dataclass
class AssignmentRequest:
    """Pick the least-loaded member of a pool for a subject (customer, ticket)."""

    key: str
    process_id: str
    pool: str
    subject_id: str
    skills: list[str] = field(default_factory=list)


@dataclass
class Assignment:
    """The staff member chosen for a subject, and their load when chosen."""

    key: str
    pool: str
    assignee_id: str
    assignee_name: str
    assignee_email: str
    manager_id: str | None
    open_load: int


@dataclass
class ReleaseRequest:
    """End an assignment so it no longer counts towards the assignee's load."""

    key: str


@dataclass
class TaskRequest:
    """A task for a person, created once per ``key``."""

    key: str
    process_id: str
    customer_id: str
    assignee_id: str
    kind: str
    title: str
    due_at: datetime
    detail: str = ""
    tenant: str | None = None  # the run's tenant (memo), so the API shows the task to it only
    assignment_key: str | None = None  # the assignment that ends when the task is done
    #: With it, ``title`` and ``detail`` are a user's templates, rendered with these values
    #: in Jinja's sandbox (``crm.automations.templates``).
    template_values: dict[str, Any] | None = None


@dataclass
class CloseTasksRequest:
    """Close every open task of a process: its work is done or no longer needed."""

    process_id: str
    resolution: str


@dataclass
class TaskQuery:
    """A run's own task, by id: what ``task_status`` reads."""

    process_id: str
    task_id: int


@dataclass
class TaskRef:
    """The task stored for a request; ``created`` is False when it already existed."""

    task_id: int
    key: str
    created: bool


@dataclass
class EmailRequest:
    """An email rendered from ``template`` with ``context`` and sent once per ``key``.

    With ``subject`` and ``body`` (a user's templates, an automation's), those
    are rendered in Jinja's sandbox instead and ``template`` only names the
    email in the outbox. ``category`` (``transactional`` or ``marketing``)
    classes the email; without it the template's class holds (a user's
    template: transactional).
    """

    key: str
    process_id: str
    to: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    category: str | None = None


@dataclass
class EmailReceipt:
    """The Message-ID of the email; ``sent`` is False when an earlier attempt sent it."""

    key: str
    message_id: str
    subject: str
    sent: bool


@dataclass
class AuditRecord:
    """One entry of a process's audit trail, stored once per ``key``."""

    key: str
    process_id: str
    step: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CustomerRecord:
    """The CRM record of a customer, created or updated by its processes."""

    customer_id: str
    company_name: str
    contact_name: str
    contact_email: str
    plan: str
    stage: str
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    country: str | None = None
    csm_id: str | None = None


@dataclass
class UsageRequest:
    """Measure a subscription's use of its plan from usage reported since ``since``."""

    subscription_id: str
    since: datetime
    tenant: str | None = None  # the run's tenant: only that tenant's reports count


@dataclass
class UsageSummary:
    """The subscription's most used metric; ``utilisation`` is used / included.

    ``metric`` is None (and ``utilisation`` 0) when no usage was reported.
    """

    subscription_id: str
    metric: str | None
    used: float
    included: float
    utilisation: float
    reports: int
    reported_at: datetime | None = None


@dataclass
class StaffLookup:
    """Who a staff id is, to reach them or their manager."""

    staff_id: str


@dataclass
class StaffContact:
    """A staff member's name, address and manager (None at the top)."""

    staff_id: str
    name: str
    email: str
    manager_id: str | None


@dataclass
class NotificationRequest:
    """An in-app notification for a staff member, stored once per ``key``."""

    key: str
    process_id: str
    staff_id: str
    kind: str
    message: str


@dataclass
class LevelRecords:
    """What one level of an SLA escalation ladder writes, in one transaction: the
    assignee's in-app notice, a role's task, the level's milestone event; each optional,
    each stored once per its key (or event id)."""

    notification: NotificationRequest | None = None
    task: TaskRequest | None = None
    milestone: MilestoneEvent | None = None


@dataclass
class LevelRecorded:
    """The level's task as stored (None without one), and how many webhook endpoints its
    milestone goes to."""

    task: TaskRef | None = None
    endpoints: int = 0


@dataclass
class SlaClockOutcome:
    """How one SLA clock of a ticket ended; ``breaches`` and ``cycles`` are counted by runs
    under SLA policies (a next reply can breach more than once), None from runs before."""

    clock: str
    status: str
    target_seconds: float
    used_seconds: float
    levels_reached: list[str] = field(default_factory=list)
    breaches: int | None = None
    cycles: int | None = None


@dataclass
class SlaOutcomeRecord:
    """The end of a ticket's SLA: met or breached per clock and the escalations made."""

    key: str
    process_id: str
    ticket_id: str
    customer_id: str
    priority: str
    tier: str | None
    assignee_id: str | None
    outcome: str
    clocks: list[SlaClockOutcome]
    escalations: list[dict[str, Any]] = field(default_factory=list)
    ended_at: datetime | None = None


@dataclass
class LeadRecord:
    """The CRM record of a lead, created or overwritten by its process."""

    lead_id: str
    process_id: str
    email: str
    name: str
    source: str
    timezone: str
    status: str
    company: str | None = None
    title: str | None = None
    country: str | None = None
    industry: str | None = None
    employees: int | None = None
    score: int | None = None
    grade: str | None = None
    owner_id: str | None = None
    email_valid: bool = True


@dataclass
class LeadSaved:
    """The stored lead; ``do_not_email`` names why its address must not be emailed, if so.

    An address is not emailed once any lead with it unsubscribed (``unsubscribed``)
    or had mail bounce (``bounced``).
    """

    lead_id: str
    status: str
    do_not_email: str | None = None


@dataclass
class MarketingListRequest:
    """Add a lead to a marketing (nurture) list, once per ``key``."""

    key: str
    process_id: str
    list_name: str
    lead_id: str
    email: str
    name: str
    score: int


@dataclass
class OutcomeEvent:
    """An outcome of a built-in process, offered to its tenant's automations as a record
    event on ``crmflow.<process>`` (``crm.domain.process_outcomes``), once per ``event_id``."""

    event_id: str
    process: str
    record_id: str
    outcome: str
    occurred_at: datetime
    record: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None


@dataclass
class OutcomeOffered:
    """What the outcome did: the automation runs it enrolled and the running ones it reached."""

    enrolled: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
