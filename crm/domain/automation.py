"""An automation as data: what a user defines, and what its run interprets.

A definition (YAML or JSON; ``crm.automations.validation`` checks it and
publishes its JSON Schema) names the object its records are (``deal``,
``ticket``), the fields those records have and their types, the trigger that
enrols a record, whether a record may enrol again, an optional goal, and the
steps. A step has an ``id``, exactly one action (``email``, ``task``,
``wait``, ``branch``, ``set``, ``start``, ``approval``, ``http``, ``end``) and where to
go next: ``next``, or else the step after it in the list; after the last step
the run ends as ``completed``.

``start`` starts one of the built-in processes (``onboarding``, ``sla``,
``renewal``, ``lead``) with a request body of CEL values, as its
``POST /v1/...`` route takes it; the body's business key (``customer_id``,
``ticket_id``, ...) makes a second start of the same key find the first.
``approval`` asks a staff member for a decision (the approval process, as a
child of the run) and goes on at ``next`` when approved, at ``on_rejected``
or ``on_expired`` otherwise (default: the next step too).
``http`` POSTs a JSON body of CEL values to a URL, signed as Standard Webhooks
sign (``activities.http_calls``), and goes on at ``on_failure`` (default:
the run fails) when the endpoint refuses it or stays unreachable.

Conditions and times are CEL (``crm.domain.expressions``) over ``record``
(the record's current fields), ``previous`` (the old values of the fields the
last event changed), ``event`` (``type``, ``occurred_at``, ``changed``),
``vars`` (the run's variables, set by ``set`` steps) and ``now``. Emails and
task texts are Jinja templates rendered in Jinja's sandbox, with the same
names.

These are plain dataclasses: they travel in a run's input through Temporal's
payload converter, so this module has no ``from __future__ import
annotations``.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crm.domain.calendar import BusinessCalendar

#: The kinds of event a record may have, as the system of record posts them.
RECORD_EVENT_TYPES: tuple[str, ...] = ("created", "updated", "deleted")

#: The types a record's field may be declared with, as CEL sees them.
FIELD_TYPES: tuple[str, ...] = ("string", "int", "double", "bool", "timestamp", "list", "map")

#: Units of a duration; ``business_*`` count the open time of the automation's calendar.
DURATION_UNITS: tuple[str, ...] = ("minutes", "hours", "days", "business_hours", "business_days")

#: How pydantic validates documents into these dataclasses (``crm.automations.validation``):
#: an unknown key is an error, not ignored.
_STRICT_KEYS = {"extra": "forbid"}

#: The actions a step may have, exactly one each.
ACTIONS: tuple[str, ...] = (
    "email",
    "task",
    "wait",
    "branch",
    "set",
    "start",
    "approval",
    "http",
    "end",
)

#: The longest a single wait may last (a yearly step waits up to a year and a day).
MAX_WAIT = timedelta(days=400)
#: The furthest a task may be due, or a record wait before it enrols again: ten years.
MAX_DELAY = timedelta(days=3653)

#: A business key, as the API's run filters take one (``api.visibility.VALUE_PATTERN``).
_BUSINESS_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def customer_of(record_id: str, record: Mapping[str, Any]) -> str:
    """Whom a run on a record is for: the record's ``customer_id`` field when it holds a
    business key (a ticket's or a deal's customer), else the record itself (a customer, a
    contact)."""
    value = record.get("customer_id")
    if isinstance(value, str) and _BUSINESS_KEY.fullmatch(value):
        return value
    return record_id


@dataclass
class Duration:
    """``amount`` of ``unit``: calendar time, or business time of the automation's calendar."""

    __pydantic_config__ = _STRICT_KEYS

    amount: int
    unit: str = "days"

    def after(self, start: datetime, calendar: BusinessCalendar) -> datetime:
        """The instant this long after ``start``."""
        if self.unit == "business_days":
            return calendar.add_business_days(start, self.amount)
        if self.unit == "business_hours":
            return calendar.add(start, timedelta(hours=self.amount))
        return start + self.calendar_length()

    def calendar_length(self) -> timedelta:
        """The length in calendar time; a business unit counts as that many calendar ones."""
        unit = self.unit.removeprefix("business_")
        return timedelta(**{unit: self.amount})

    def describe(self) -> str:
        unit = self.unit.replace("_", " ")
        return f"{self.amount} {unit.removesuffix('s') if self.amount == 1 else unit}"


@dataclass
class Person:
    """Whom an email, task or approval is for: exactly one of ``staff``, ``owner``, ``field``,
    ``pool``.

    ``owner`` is the staff member in the record's owner field; ``field`` names a
    record field holding an email address (emails) or a staff id (tasks, approvals);
    ``pool`` (tasks) picks its least-loaded member, or with ``claim`` leaves the
    task unassigned in the pool for a member to claim. ``manager`` goes one up, to
    the manager of that staff member.
    """

    __pydantic_config__ = _STRICT_KEYS

    staff: str | None = None
    owner: bool = False
    field: str | None = None
    pool: str | None = None
    manager: bool = False
    claim: bool = False

    def describe(self) -> str:
        if self.owner:
            who = "the record's owner"
        elif self.staff:
            who = self.staff
        elif self.pool:
            who = f"pool {self.pool}" + (", to claim" if self.claim else "")
        else:
            who = f"record.{self.field}"
        return f"manager of {who}" if self.manager else who


@dataclass
class EmailStep:
    """Send an email rendered from ``subject`` and ``body`` to ``to``.

    ``category`` is ``marketing`` (one-click unsubscribe, held back from an
    address that unsubscribed) or ``transactional``; without it, an email to an
    address in a record field is marketing and one to staff transactional.
    """

    __pydantic_config__ = _STRICT_KEYS

    to: Person
    subject: str
    body: str
    category: Literal["marketing", "transactional"] | None = None

    def email_class(self) -> str:
        """The class the email goes out as."""
        if self.category is not None:
            return self.category
        return "marketing" if self.to.field is not None and not self.to.manager else "transactional"


@dataclass
class TaskStep:
    """Create a task for ``assignee``, due ``due`` after the step runs.

    With ``wait_for_done`` the run waits for a person to complete it that long at most,
    then goes on at ``on_timeout`` (default: the next step); done in time, it goes on at
    ``next``.
    """

    __pydantic_config__ = _STRICT_KEYS

    assignee: Person
    title: str
    due: Duration
    detail: str = ""
    wait_for_done: Duration | None = None
    on_timeout: str | None = None


@dataclass
class EventMatch:
    """Which record events a trigger or wait takes: of one of ``types``, changing one of
    ``changed``, with ``condition`` holding (each optional for a wait; a trigger names its
    ``types``)."""

    __pydantic_config__ = _STRICT_KEYS

    types: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    condition: str | None = None


@dataclass
class Schedule:
    """The instants of ``cron`` (five fields, or ``@daily``, ``@weekly``...) in ``timezone``."""

    __pydantic_config__ = _STRICT_KEYS

    cron: str
    timezone: str = "UTC"

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone})"


@dataclass
class Trigger(EventMatch):
    """What enrols a record: its events that match (``types``, ``changed``,
    ``condition``), or a ``schedule``, whose every instant starts one run."""

    __pydantic_config__ = _STRICT_KEYS

    schedule: Schedule | None = None


@dataclass
class WaitStep:
    """Wait ``duration``, or ``until`` an instant (a CEL timestamp), or for an ``event``.

    A wait for an event gives up after ``timeout`` (required) and goes on at
    ``on_timeout`` (default: the next step); the event leads to ``next``.
    """

    __pydantic_config__ = _STRICT_KEYS

    duration: Duration | None = None
    until: str | None = None
    event: EventMatch | None = None
    timeout: Duration | None = None
    on_timeout: str | None = None


@dataclass
class BranchCase:
    """Go to ``next`` when ``condition`` holds."""

    __pydantic_config__ = _STRICT_KEYS

    condition: str
    next: str


@dataclass
class BranchStep:
    """The first case whose condition holds; ``otherwise`` (default: the next step) if none."""

    __pydantic_config__ = _STRICT_KEYS

    cases: list[BranchCase]
    otherwise: str | None = None


@dataclass
class StartStep:
    """Start the built-in ``process`` with the request body ``fields`` (field -> CEL), and
    keep its process id in the variable ``save_as`` if given."""

    __pydantic_config__ = _STRICT_KEYS

    process: str
    fields: dict[str, str]
    save_as: str | None = None


@dataclass
class ApprovalStep:
    """Ask ``approver`` to approve ``subject`` (a CEL string) within ``timeout``.

    Approved goes to ``next``; rejected to ``on_rejected`` and expired (no
    decision within the timeout) to ``on_expired``, each by default the next
    step.
    """

    __pydantic_config__ = _STRICT_KEYS

    approver: Person
    subject: str
    timeout: Duration
    on_rejected: str | None = None
    on_expired: str | None = None


@dataclass
class HttpStep:
    """POST the JSON object ``body`` (key -> CEL) to ``url``, signed, and keep the answer's
    status in the variable ``save_as`` if given.

    A 2xx answer goes to ``next``; a refusal (another status, an address inside the
    network) or an endpoint unreachable for an hour goes to ``on_failure``, or
    fails the run when there is none.
    """

    __pydantic_config__ = _STRICT_KEYS

    url: str
    body: dict[str, str] = field(default_factory=dict)
    save_as: str | None = None
    on_failure: str | None = None


@dataclass
class EndStep:
    """End the run with ``outcome``."""

    __pydantic_config__ = _STRICT_KEYS

    outcome: str = "completed"


@dataclass
class Step:
    """One step: an id, exactly one action, and optionally where to go next."""

    __pydantic_config__ = _STRICT_KEYS

    id: str
    email: EmailStep | None = None
    task: TaskStep | None = None
    wait: WaitStep | None = None
    branch: BranchStep | None = None
    set: dict[str, str] | None = None  # variable name -> CEL expression
    start: StartStep | None = None
    approval: ApprovalStep | None = None
    http: HttpStep | None = None
    end: EndStep | None = None
    next: str | None = None

    @property
    def action(self) -> str:
        """The name of the step's action."""
        for name in ACTIONS:
            if getattr(self, name) is not None:
                return name
        raise ValueError(f"step {self.id!r} has no action")

    @property
    def waits(self) -> bool:
        """Whether the step lets time pass (a wait, an approval, a task waited for): a loop
        through it cannot spin."""
        waited_task = self.task is not None and self.task.wait_for_done is not None
        return self.wait is not None or self.approval is not None or waited_task


@dataclass
class Enrollment:
    """Whether a record may enrol again once its run ended, and not before ``after``."""

    __pydantic_config__ = _STRICT_KEYS

    reenroll: bool = False
    after: Duration | None = None


@dataclass
class AutomationDefinition:
    """One version of an automation, as its runs interpret it."""

    __pydantic_config__ = _STRICT_KEYS

    id: str
    name: str
    object: str
    trigger: Trigger  # which record events enrol a record, or a schedule
    steps: list[Step]
    fields: dict[str, str] = field(default_factory=dict)  # field name -> one of FIELD_TYPES
    owner_field: str = "owner_id"
    calendar: str = "default"
    enrollment: Enrollment = field(default_factory=Enrollment)
    goal: str | None = None
    description: str = ""

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def following(self, step_id: str) -> str | None:
        """Where the run goes after ``step_id`` by default: its ``next``, else the step after
        it; None after the last."""
        index = self.index(step_id)
        if self.steps[index].next is not None:
            return self.steps[index].next
        return self.steps[index + 1].id if index + 1 < len(self.steps) else None

    def index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def successors(self, step: Step) -> list[str | None]:
        """Every step ``step`` may go to (None: the run ends)."""
        if step.end is not None:
            return []
        default = self.following(step.id)
        if step.branch is not None:
            return [case.next for case in step.branch.cases] + [step.branch.otherwise or default]
        if step.wait is not None and step.wait.event is not None:
            return [default, step.wait.on_timeout or default]
        if step.task is not None and step.task.wait_for_done is not None:
            return [default, step.task.on_timeout or default]
        if step.approval is not None:
            approval = step.approval
            return [default, approval.on_rejected or default, approval.on_expired or default]
        if step.http is not None:
            return [default, step.http.on_failure or default]
        return [default]

    def listens(self) -> bool:
        """Whether its runs want the record's later events (a goal, or a wait for one)."""
        return self.goal is not None or any(
            step.wait is not None and step.wait.event is not None for step in self.steps
        )

    def waits_for(self, event_type: str) -> bool:
        """Whether one of its steps waits for a record event of ``event_type`` (a wait naming
        no types waits for any)."""
        return any(
            step.wait is not None
            and step.wait.event is not None
            and (not step.wait.event.types or event_type in step.wait.event.types)
            for step in self.steps
        )
