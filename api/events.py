"""Business events as the API accepts them: one body type per event, from the registry.

``event_body_type`` is the body of ``POST /v1/processes/{id}/events``: a
union on ``type`` of every registered event, each with its data model (the
dataclass the workflow decodes, with the policy's values as enums), so the
OpenAPI document says what each event carries. ``check_event`` refuses an
event the run's process does not take, data its dataclass refuses (with the
same decoding the workflow applies) and an ``occurred_at`` in the future
(``check_occurred_at``, which record events share); an event without one
happened when the API received it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from api.problems import Problem, invalid_input
from crm.policy import Policy
from processes import PROCESSES
from processes.registry import AwareInstant, EventType, ProcessDescriptor, one_of
from workflows.common import ProcessEvent, event_data


class AnyData(BaseModel):
    """Data of an event that carries none of its own; other fields are recorded as given."""

    model_config = ConfigDict(extra="allow")


#: How far ahead of the API's clock an ``occurred_at`` may be (the sender's clock may run
#: a little fast); later is a 422.
CLOCK_SKEW = timedelta(seconds=60)

OCCURRED_AT = Field(
    default=None,
    description="When it happened in the system of record (a reply's or a status change's "
    "own timestamp), with its offset; default: when crmflow received the event. A ticket's "
    "SLA clocks count from it, so an event delivered late still starts or stops them on "
    "time; one earlier than what the run has already acted on counts from that instead. "
    f"At most {CLOCK_SKEW.seconds} s ahead of crmflow's clock.",
)


def event_body_type(policy: Policy) -> Any:
    """The union, on ``type``, of the events every registered process accepts under ``policy``.

    An event name two processes use with different data gets the data model
    of neither in the union (any object); ``check_event`` still applies the
    run's own.
    """
    by_name: defaultdict[str, list[tuple[ProcessDescriptor, EventType]]] = defaultdict(list)
    for process in PROCESSES:
        for event in process.events(policy):
            by_name[event.name].append((process, event))
    members = []
    for name, uses in sorted(by_name.items()):
        data = {event.data for _, event in uses}
        data_model = _data_model(uses[0][1]) if len(data) == 1 else AnyData
        needs_data = any(field.is_required() for field in data_model.model_fields.values())
        members.append(
            create_model(
                _camel(name) + "Event",
                __config__=ConfigDict(extra="forbid"),
                __doc__=" ".join(
                    f"{process.title}: {event.description}" for process, event in uses
                ),
                type=(one_of([name]), Field(description="What happened.")),
                data=(data_model, ... if needs_data else Field(default_factory=data_model)),
                occurred_at=(AwareInstant | None, OCCURRED_AT),
            )
        )
    return Annotated[typing.Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007


def check_event(
    process: ProcessDescriptor | None,
    name: str,
    data: dict[str, Any],
    policy: Policy,
    *,
    occurred_at: datetime | None,
    received_at: datetime,
) -> ProcessEvent:
    """The event ``name`` with ``data`` (as sent) to signal to a run of ``process``, which
    happened at ``occurred_at`` (None: at ``received_at``).

    The body has been validated against the union already. Raises Problem 409
    for an event of another process's vocabulary (the body is valid; the run
    is not one that takes it), Problem 422 naming ``data`` for data its own
    dataclass refuses, decoded as the workflow will, and naming ``occurred_at``
    for an instant more than ``CLOCK_SKEW`` after ``received_at``.
    """
    accepted = process.event_types(policy) if process is not None else {}
    if name not in accepted:
        raise Problem(
            409,
            "event-not-accepted",
            "The process does not take this event",
            f"a {process.name if process else 'process'} run does not take {name!r}; "
            f"it takes {list(accepted)}",
        )
    if occurred_at is not None:
        check_occurred_at(occurred_at, received_at)
    event = ProcessEvent(type=name, data=data, occurred_at=occurred_at or received_at)
    data_type = accepted[name].data
    if data_type is not None:
        try:
            event_data(data_type, event)
        except (TypeError, ValueError) as err:
            raise invalid_input("data", str(err)) from None
    return event


def check_occurred_at(occurred_at: datetime, received_at: datetime) -> None:
    """Raises Problem 422 naming ``occurred_at`` when it is more than ``CLOCK_SKEW`` after
    ``received_at``, when the API received the event."""
    if occurred_at > received_at + CLOCK_SKEW:
        raise invalid_input(
            "occurred_at",
            f"{occurred_at.isoformat()} is in the future (crmflow's clock says "
            f"{received_at.isoformat(timespec='seconds')})",
        )


def _data_model(event: EventType) -> type[BaseModel]:
    if event.data is None:
        return AnyData
    hints = typing.get_type_hints(event.data, include_extras=True)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event.data):
        annotation = event.fields.get(field.name, hints[field.name])
        if field.default is not dataclasses.MISSING:
            fields[field.name] = (annotation, field.default)
        elif field.default_factory is not dataclasses.MISSING:
            fields[field.name] = (annotation, Field(default_factory=field.default_factory))
        else:
            fields[field.name] = (annotation, ...)
    return create_model(
        event.data.__name__,
        __config__=ConfigDict(extra="allow"),
        __doc__=event.data.__doc__,
        **fields,
    )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
