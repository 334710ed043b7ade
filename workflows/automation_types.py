"""The data an automation run exchanges: its input, the record events it receives, its result.

A run's input carries the whole version of the definition it interprets and
the business calendar it counts business time in, so a later version or a
changed policy never changes a run in flight. When a run continues as new
(a loop back to an earlier step), the next run's input carries where it
stands: the step, the record as last seen, the variables, the events already
taken.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from crm.domain.automation import AutomationDefinition
from crm.domain.automation_events import event_names, names_for
from crm.domain.calendar import CalendarSpec

#: How many event ids a run remembers to take each event once.
REMEMBERED_EVENTS = 500

#: The activity a ``start`` step runs (``activities.process_starts``).
START_PROCESS = "start_process"

#: The activity an ``http`` step runs (``activities.http_calls``).
CALL_HTTP = "call_http"

#: The headers an ``http`` step's request is signed with (Standard Webhooks).
WEBHOOK_HEADERS: tuple[str, ...] = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass
class RecordEvent:
    """A change of a record in the system of record, as posted to ``/v1/records/events``."""

    event_id: str
    object: str
    record_id: str
    type: str
    occurred_at: datetime
    record: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)

    def changed(self) -> list[str]:
        """The fields this event changed: those with an old value in ``previous`` that differs."""
        return sorted(
            name for name, old in self.previous.items() if self.record.get(name, None) != old
        )


@dataclass
class AutomationInput:
    """One record's run of one version of an automation."""

    automation_id: str
    version: int
    definition: AutomationDefinition
    calendar: CalendarSpec
    record_id: str
    record: dict[str, Any]
    event: RecordEvent | None = None  # what enrolled it; None for a manual enrollment
    # Where a run that continued as new stands:
    at_step: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    seen_events: list[str] = field(default_factory=list)
    steps_taken: int = 0
    enrolled_at: datetime | None = None


@dataclass
class AutomationResult:
    """How a run ended: ``outcome`` (``completed``, an end step's, ``goal_met``, ``failed``)."""

    automation_id: str
    version: int
    record_id: str
    outcome: str
    last_step: str | None
    steps_taken: int
    variables: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class ProcessStartRequest:
    """A ``start`` step's start of the built-in ``process`` with the request body ``fields``
    (the values of the step's expressions), for the run ``requested_by`` of ``tenant``.

    ``requested_at`` is the run's time of the step: what the process's checks
    of the body count as now, on every attempt.
    """

    key: str
    process: str
    fields: dict[str, Any]
    requested_by: str
    requested_at: datetime
    tenant: str | None = None


@dataclass
class ProcessStartResult:
    """The process a ``start`` step started, or found running under the same business key."""

    process_id: str
    run_id: str
    created: bool


@dataclass
class HttpCallRequest:
    """An ``http`` step's POST of ``body`` (the values of the step's expressions) to ``url``.

    ``key`` is the step's idempotency key, sent as ``webhook-id`` on every
    attempt so that the receiver takes the call once.
    """

    key: str
    url: str
    body: dict[str, Any]
    requested_by: str


@dataclass
class HttpCallResult:
    """The 2xx status the endpoint answered an ``http`` step's call with."""

    status: int


def automation_run_id(
    automation_id: str, object_name: str, record_id: str, tenant: str | None = None
) -> str:
    """The business key of a record's run: ``automation-{id}-{object}-{record}[@tenant]``."""
    run_id = f"automation-{automation_id}-{object_name}-{record_id}"
    return f"{run_id}@{tenant}" if tenant else run_id


def jsonable(value: Any) -> Any:
    """``value`` as JSON can carry it: timestamps as ISO 8601, durations as seconds.

    CEL values a ``set`` step gives (timestamps, durations, lists, maps) go
    into the run's variables, its templates and its next run's input this way.
    """
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass
class RecordView:
    """The record as a run sees it: its fields (each event's merged in), the old values the
    last event changed, that event, the run's variables and the events already taken.

    Pure: the workflow keeps one and evaluates its expressions on ``names``.
    """

    definition: AutomationDefinition
    record: dict[str, Any]
    previous: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    event: dict[str, Any] = field(default_factory=dict)

    def take(self, event: RecordEvent) -> None:
        """See ``event``: its fields over the record's, its old values, its id remembered."""
        self.seen = [*self.seen, event.event_id][-REMEMBERED_EVENTS:]
        self.record = {**self.record, **event.record}
        self.previous = dict(event.previous)
        self.event = event_names(event.type, event.occurred_at, event.changed())

    def names(self, now: datetime) -> dict[str, Any]:
        """The names the definition's expressions are evaluated with, at ``now``."""
        return names_for(
            self.definition,
            record=self.record,
            previous=self.previous,
            event=self.event,
            variables=self.variables,
            now=now,
        )

    def template_values(self, now: datetime) -> dict[str, Any]:
        """The same names as JSON, for the templates an activity renders."""
        values: dict[str, Any] = jsonable(
            {
                "record": self.record,
                "previous": self.previous,
                "event": self.event,
                "vars": self.variables,
                "now": now,
            }
        )
        return values
