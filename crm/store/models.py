"""SQLModel tables of the CRM database.

Every table written by an activity has a unique ``key`` (the idempotency key
``{process_id}/{step}``), so a retried activity finds its earlier row instead
of writing a second one. Timestamps are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Date, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from crm.domain.calendar import as_utc as as_utc  # the models' callers read their dates with it


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def of_tenant(column: Any, tenant: str | None) -> Any:
    """The condition on a ``tenant`` column: rows of ``tenant``, or of no tenant for None."""
    return column == tenant if tenant is not None else column.is_(None)


def created_now() -> Any:
    """A required UTC timestamp column that defaults to the time of the insert."""
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def no_time_yet() -> Any:
    """An optional UTC timestamp column, empty until the event it records happens."""
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Customer(SQLModel, table=True):
    """A customer's CRM record, kept up to date by its processes."""

    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, max_length=100)
    company_name: str = Field(max_length=200)
    contact_name: str = Field(max_length=200)
    contact_email: str = Field(max_length=320)
    plan: str = Field(max_length=50)
    stage: str = Field(max_length=50)
    domain: str | None = Field(default=None, max_length=255)
    industry: str | None = Field(default=None, max_length=100)
    employees: int | None = None
    country: str | None = Field(default=None, max_length=2)
    csm_id: str | None = Field(default=None, max_length=100, index=True)
    updated_at: datetime = created_now()


class Assignment(SQLModel, table=True):
    """A subject (customer, ticket) assigned to a staff member from a pool."""

    __tablename__ = "assignments"
    #: Choosing an assignee reads each member's active assignments and latest
    #: one; these keep both to an index lookup however many assignments
    #: have ended (a full scan took 107 ms per choice at 100,000 rows).
    __table_args__ = (
        Index("ix_assignments_assignee_active", "assignee_id", "active"),
        Index("ix_assignments_assignee_assigned_at", "assignee_id", "assigned_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    pool: str = Field(index=True, max_length=100)
    subject_id: str = Field(max_length=100)
    assignee_id: str = Field(index=True, max_length=100)
    active: bool = Field(default=True, index=True)
    assigned_at: datetime = created_now()
    released_at: datetime | None = no_time_yet()


class Task(SQLModel, table=True):
    """A task for a person, created by a process step."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    customer_id: str = Field(index=True, max_length=100)
    assignee_id: str = Field(index=True, max_length=100)
    kind: str = Field(max_length=50)
    title: str = Field(max_length=300)
    detail: str = ""
    status: str = Field(default="open", max_length=20, index=True)
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = created_now()
    tenant: str | None = Field(default=None, max_length=100, index=True)
    #: The assignment whose work this task is (a lead routed to a rep): it ends,
    #: and stops counting towards the assignee's load, when the task is done.
    assignment_key: str | None = Field(default=None, max_length=300)
    completed_at: datetime | None = no_time_yet()
    completed_by: str | None = Field(default=None, max_length=200)


class OutboundEmail(SQLModel, table=True):
    """An email a process sends; ``status`` is ``sending`` until the relay accepted it."""

    __tablename__ = "outbound_emails"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    message_id: str = Field(unique=True, max_length=300)
    recipient: str = Field(max_length=320)
    template: str = Field(max_length=100)
    subject: str = Field(max_length=300)
    status: str = Field(default="sending", max_length=20)
    created_at: datetime = created_now()
    sent_at: datetime | None = no_time_yet()


class AuditEntry(SQLModel, table=True):
    """One step a process took, in the order it was recorded."""

    __tablename__ = "audit_entries"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    step: str = Field(max_length=100)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = created_now()


class UsageReport(SQLModel, table=True):
    """How much of a plan a subscription used, as reported by the product (one metric)."""

    __tablename__ = "usage_reports"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(index=True, max_length=100)
    metric: str = Field(max_length=50)
    used: float = Field(ge=0)
    included: float = Field(gt=0)
    reported_at: datetime = created_now()
    tenant: str | None = Field(default=None, max_length=100, index=True)


class Notification(SQLModel, table=True):
    """An in-app notification for a staff member (an SLA warning, a reassignment)."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    staff_id: str = Field(index=True, max_length=100)
    kind: str = Field(max_length=50)
    message: str = ""
    read_at: datetime | None = no_time_yet()
    created_at: datetime = created_now()


class SlaOutcome(SQLModel, table=True):
    """How a ticket's SLA ended: met or breached per clock, business time used, escalations.

    ``clocks`` maps ``first_response`` and ``resolution`` to their status
    (``met``/``breached``), target and used business seconds and levels reached.
    """

    __tablename__ = "sla_outcomes"

    id: int | None = Field(default=None, primary_key=True)
    #: The ticket run's tenant (its memo); None for a run of no tenant, and for every
    #: outcome stored before the column was.
    tenant: str | None = Field(default=None, max_length=100, index=True)
    key: str = Field(unique=True, max_length=300)
    process_id: str = Field(index=True, max_length=200)
    ticket_id: str = Field(index=True, max_length=100)
    customer_id: str = Field(index=True, max_length=100)
    priority: str = Field(max_length=20)
    tier: str | None = Field(default=None, max_length=50)
    assignee_id: str | None = Field(default=None, max_length=100)
    outcome: str = Field(max_length=20)
    first_response: str = Field(max_length=20)
    resolution: str = Field(max_length=20)
    first_response_used_seconds: float = 0
    resolution_used_seconds: float = 0
    clocks: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    escalations: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    ended_at: datetime = created_now()


class Lead(SQLModel, table=True):
    """A sales lead and where its qualification stands.

    ``status`` is one of ``new``, ``contacted``, ``unresponsive``, ``qualified``,
    ``nurture``, ``unsubscribed`` and ``bounced``. ``email_valid`` turns False
    when mail to the address bounced; an unsubscribed or bounced address is
    never emailed again, by this lead's process or any other lead's.
    """

    __tablename__ = "leads"

    lead_id: str = Field(primary_key=True, max_length=100)
    process_id: str = Field(max_length=200)
    email: str = Field(index=True, max_length=320)
    name: str = Field(max_length=200)
    company: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=2)
    industry: str | None = Field(default=None, max_length=100)
    employees: int | None = None
    source: str = Field(max_length=50)
    timezone: str = Field(max_length=64)
    status: str = Field(max_length=20, index=True)
    score: int | None = None
    grade: str | None = Field(default=None, max_length=10)
    owner_id: str | None = Field(default=None, max_length=100, index=True)
    email_valid: bool = True
    updated_at: datetime = created_now()


class MarketingListEntry(SQLModel, table=True):
    """A lead handed to marketing: a member of a nurture list, once per ``key``."""

    __tablename__ = "marketing_list_entries"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    list_name: str = Field(index=True, max_length=100)
    lead_id: str = Field(index=True, max_length=100)
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    score: int
    added_at: datetime = created_now()


class ApiKey(SQLModel, table=True):
    """An API key made with ``crmflow api-key create``: only its hash is kept."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(unique=True, max_length=32)
    key_sha256: str = Field(max_length=64)
    principal: str = Field(index=True, max_length=100)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    staff_id: str | None = Field(default=None, max_length=100)
    tenant: str | None = Field(default=None, max_length=100)
    created_at: datetime = created_now()
    revoked_at: datetime | None = no_time_yet()


#: The ``tenant`` of the automation tables for a principal of no tenant: a key
#: column, so not NULL (unique constraints treat NULLs as distinct).
NO_TENANT = ""


class Automation(SQLModel, table=True):
    """An automation of a tenant: where it stands, and which of its versions enrols records.

    ``state`` is ``draft`` (never activated), ``active`` (enrols records with
    ``active_version``), ``paused`` (enrols none; its runs go on) or
    ``archived`` (for good). ``name`` and ``object`` are those of the version
    that enrols records (of the latest, until one was activated): the object
    is how a record event finds the automations it concerns.
    """

    __tablename__ = "automations"
    __table_args__ = (
        UniqueConstraint("tenant", "automation_id", name="uq_automations_tenant_id"),
        Index("ix_automations_tenant_object", "tenant", "object"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    automation_id: str = Field(max_length=100)
    name: str = Field(max_length=200)
    object: str = Field(max_length=100)
    state: str = Field(default="draft", max_length=20)
    latest_version: int
    active_version: int | None = None
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class AutomationVersion(SQLModel, table=True):
    """One version of an automation, never changed once stored.

    ``document`` is the definition as submitted (parsed from YAML or JSON);
    ``definition`` the same, validated and with every default filled in, as
    runs receive it.
    """

    __tablename__ = "automation_versions"
    __table_args__ = (
        UniqueConstraint(
            "tenant", "automation_id", "version", name="uq_automation_versions_tenant_id_version"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    automation_id: str = Field(max_length=100)
    version: int
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_now()
    created_by: str = Field(max_length=100)


class RecordEventReceipt(SQLModel, table=True):
    """A record event the API took, once per ``(tenant, event_id)``, and what it answered.

    ``answer`` is None while the request that first took the event is still
    working on it; ``body_sha256`` tells a repeat of the event from another
    event sent under the same id.
    """

    __tablename__ = "record_event_receipts"
    __table_args__ = (
        UniqueConstraint("tenant", "event_id", name="uq_record_event_receipts_tenant_event"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    event_id: str = Field(max_length=200)
    body_sha256: str = Field(max_length=64)
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = created_now()
    answered_at: datetime | None = no_time_yet()


class WebhookEndpoint(SQLModel, table=True):
    """A tenant's webhook endpoint: where the events of ``event_types`` are delivered.

    ``secret`` is the signing secret sealed with the sealing keys
    (``crm.platform.sealing``); during a rotation ``previous_secret`` still
    signs until ``previous_secret_expires_at``. ``failing_since`` is the first
    failed attempt of the current run of failures (None after a success);
    ``disabled_reason`` says why delivery stopped when it was not the admin.
    ``draining_until`` is the lease of a running drain (``activities.
    webhook_delivery``): until then it takes what is emitted, unwoken.
    """

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: str = Field(unique=True, max_length=40)
    tenant: str = Field(default=NO_TENANT, max_length=100, index=True)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    personal_data: bool = False
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    secret: str = Field(max_length=500)
    previous_secret: str | None = Field(default=None, max_length=500)
    previous_secret_expires_at: datetime | None = no_time_yet()
    failing_since: datetime | None = no_time_yet()
    created_at: datetime = created_now()
    updated_at: datetime = created_now()
    deleted_at: datetime | None = no_time_yet()
    draining_until: datetime | None = no_time_yet()


class WebhookEvent(SQLModel, table=True):
    """An event a process emitted, once per ``key`` (``{tenant}/{event_id}``)."""

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=700)
    event_id: str = Field(max_length=600)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    type: str = Field(max_length=100)
    process_id: str = Field(max_length=300)
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = created_now()


class WebhookDelivery(SQLModel, table=True):
    """One event's delivery to one endpoint, once per ``key`` (``{endpoint}/{event}``).

    ``state`` is ``pending`` (``next_attempt_at`` says when), ``delivered``,
    or ``failed`` (given up: refused, three days of failures, or the endpoint
    disabled); a redelivery makes a failed one pending again. Its
    ``webhook-id`` is ``message_id``, the same on every attempt.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "endpoint_id", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_log", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_state", "state", "endpoint_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=800)
    endpoint_id: str = Field(max_length=40)
    event_key: str = Field(max_length=700)
    message_id: str = Field(max_length=100)
    state: str = Field(default="pending", max_length=20)
    attempts: int = 0
    #: ``attempts`` when it was last redelivered: the back-off starts again from there.
    attempts_before: int | None = None
    next_attempt_at: datetime | None = no_time_yet()
    first_attempt_at: datetime | None = no_time_yet()
    last_attempt_at: datetime | None = no_time_yet()
    last_status: int | None = None
    last_latency_ms: float | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = no_time_yet()
    created_at: datetime = created_now()


class WebhookAttempt(SQLModel, table=True):
    """One attempt at a delivery: when, what the endpoint answered, how long it took."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_key: str = Field(max_length=800, index=True)
    attempt: int
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: int | None = None
    latency_ms: float
    error: str | None = Field(default=None, max_length=500)


class ProcessOutcome(SQLModel, table=True):
    """One outcome or milestone event of a process, once per ``key`` (``{tenant}/{event_id}``).

    The fact table the reports are built from: written with the webhook event
    of the same id, in its transaction (``crm.reports.facts``). ``outcome`` is
    what happened (``activated``, ``renewed``, ``routed``, ``goal_met``); the
    typed columns are the dimensions reports group by, ``detail`` the rest of
    the event's data. ``started_at`` is when the run (a renewal's term) began,
    when known.
    """

    __tablename__ = "process_outcomes"
    __table_args__ = (
        Index("ix_process_outcomes_tenant_process_at", "tenant", "process", "occurred_at"),
        Index("ix_process_outcomes_process_id", "process_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=700)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    process: str = Field(max_length=30)
    process_id: str = Field(max_length=300)
    record_id: str = Field(max_length=300)
    customer_id: str | None = Field(default=None, max_length=100)
    outcome: str = Field(max_length=50)
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    started_at: datetime | None = no_time_yet()
    plan: str | None = Field(default=None, max_length=50)
    owner_id: str | None = Field(default=None, max_length=100)
    priority: str | None = Field(default=None, max_length=20)
    tier: str | None = Field(default=None, max_length=50)
    score: int | None = None
    grade: str | None = Field(default=None, max_length=10)
    annual_value: float | None = None
    automation_id: str | None = Field(default=None, max_length=100)
    automation_version: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RenewalTerm(SQLModel, table=True):
    """One term of a subscription for the renewals report, once per ``key``
    (``{tenant}/{process_id}/term{term}``).

    Kept from the term's events (``crm.reports.terms``): ``renewal.term_started``
    opens it, ``renewal.date_changed`` moves its ``renewal_date``, its outcome
    ends it (``outcome``, ``ended_at``); an outcome of a term never opened
    (a run begun before the ``report-milestones`` patch) stores it ended. What
    is due, and still open, per day is summed in the renewals roll-ups.
    """

    __tablename__ = "renewal_terms"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=700)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    process_id: str = Field(max_length=300)
    term: int
    renewal_date: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    annual_value: float = 0.0
    plan: str | None = Field(default=None, max_length=50)
    owner_id: str | None = Field(default=None, max_length=100)
    outcome: str | None = Field(default=None, max_length=50)
    ended_at: datetime | None = no_time_yet()


class ReportRollup(SQLModel, table=True):
    """What one UTC day, week or month (``grain``, beginning on ``day``) added to one
    report, for one group (``dimension`` = ``value``).

    ``dimension`` is empty for the rows of the whole report. ``counts`` are
    sums (outcomes, money), ``histograms`` the durations in log-scale buckets
    (``crm.reports.rollups``): a report reads a row per month, week or day of
    its range and group, however many outcomes they had.
    """

    __tablename__ = "report_rollups"
    __table_args__ = (
        UniqueConstraint(
            "tenant",
            "report",
            "dimension",
            "grain",
            "day",
            "value",
            name="uq_report_rollups_group_span",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(default=NO_TENANT, max_length=100)
    report: str = Field(max_length=30)
    dimension: str = Field(default="", max_length=30)
    grain: str = Field(default="day", max_length=5)
    day: date = Field(sa_column=Column(Date, nullable=False))
    value: str = Field(default="", max_length=300)
    counts: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    histograms: dict[str, dict[str, int]] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )


class EmailSuppression(SQLModel, table=True):
    """An address no email of ``category`` goes to: ``marketing`` (an unsubscribe, a
    complaint, a lead that unsubscribed) or ``all`` (a hard bounce: the address does not
    exist). ``key`` is ``{category}:{address}``: the first reason is kept."""

    __tablename__ = "email_suppressions"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=340)
    address: str = Field(index=True, max_length=320)
    category: str = Field(max_length=20)
    reason: str = Field(max_length=40)
    process_id: str | None = Field(default=None, max_length=200)
    message_id: str | None = Field(default=None, max_length=300)
    created_at: datetime = created_now()


class EmailLinkKey(SQLModel, table=True):
    """The secret that signs the unsubscribe links in emails when the settings name none;
    made once, shared by every worker and API through the database."""

    __tablename__ = "email_link_keys"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=40)
    secret: str = Field(max_length=100)
