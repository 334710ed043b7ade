"""What the API, the worker and the CLI know of a process, declared once per process.

A ``ProcessDescriptor`` names a process's workflow, how a start request is
validated (a request model built from the policy, so plans and priorities are
enums in the OpenAPI document) and turned into the workflow's input, the
business events it accepts with the data each carries, and the search
attributes its runs set. ``processes.PROCESSES`` registers them.
"""

from __future__ import annotations

import re
import typing
import zoneinfo
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import email_validator
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    EmailStr,
    StringConstraints,
    WithJsonSchema,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair

from crm.platform.principals import TENANT_PATTERN, Principal
from crm.policy import Policy
from crm.store.db import Database
from workflows.common import CUSTOMER_ID, PROCESS, STAGE

#: A caller's id of a customer, ticket, subscription or lead: the business key of a process.
BusinessKey = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
]
#: Some character that is not Unicode White_Space, which ``strip_whitespace`` trims (NEL and
#: the no-break and ideographic spaces too): a text of only such characters is empty once
#: trimmed and refused, and the OpenAPI document says so.
NOT_BLANK = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def text(max_length: int) -> StringConstraints:
    """Free text of at most ``max_length`` characters, trimmed, with something in it."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=NOT_BLANK
    )


Name = Annotated[str, text(200)]


def _in_utc(value: datetime) -> datetime:
    """``value`` when UTC can hold its instant: 0001-01-01 east of UTC or 9999-12-31 west of
    it cannot, and converting it would overflow. Raises ValueError (a 422 on the field)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must be a time within the years 1 to 9999 in UTC") from None
    return value


def _written_as_time(value: Any) -> Any:
    """``value`` unless it is a number (or a string of one): pydantic would take it for
    seconds since 1970, where the API documents an ISO 8601 date-time. Raises ValueError."""
    if isinstance(value, int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value.strip())
    ):
        raise ValueError("an ISO 8601 date-time, not a number")
    return value


_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
#: A time the API takes (UTC if no zone), written as an ISO 8601 date-time, whose instant
#: UTC can hold.
Instant = Annotated[datetime, BeforeValidator(_written_as_time), AfterValidator(_in_utc)]
#: A time with its zone or offset, as ``Instant``.
AwareInstant = Annotated[AwareDatetime, BeforeValidator(_written_as_time), AfterValidator(_in_utc)]


def _either_case(word: str) -> str:
    return "".join(f"[{letter.lower()}{letter.upper()}]" for letter in word)


#: An email address mail can reach: not under a special-use domain (``.test``,
#: ``.localhost``, ...), which the validator refuses; the OpenAPI document says so.
Email = Annotated[
    EmailStr,
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "pattern": r"^(?!.*[@.](?:"
            + "|".join(map(_either_case, email_validator.SPECIAL_USE_DOMAIN_NAMES))
            + r")\.?$)",
        }
    ),
]


def one_of(values: Iterable[str]) -> Any:
    """A string type that accepts exactly ``values``; the OpenAPI document lists them as an enum.

    Raises ValueError when ``values`` is empty.
    """
    choices = tuple(dict.fromkeys(values))
    if not choices:
        raise ValueError("an enum needs at least one value")
    return typing.Literal.__getitem__(choices)


@dataclass(frozen=True)
class StartContext:
    """What building a workflow's input may consult: the policy, the CRM records, the caller."""

    policy: Policy
    database: Database
    principal: Principal
    now: datetime


@dataclass(frozen=True)
class ProcessStart:
    """A validated start: the business key, the workflow's input and how the run is shown.

    ``search_attributes`` are the process's own, beyond ``CrmProcess``,
    ``CustomerId`` and ``CrmStage``, which every run sets.
    """

    business_key: str
    customer_id: str
    argument: Any
    summary: str
    stage: str = "starting"
    search_attributes: Sequence[SearchAttributePair[str]] = ()


@dataclass(frozen=True)
class EventType:
    """A business event a process accepts: its name and the dataclass its ``data`` decodes to.

    The dataclass is the one the workflow decodes (``workflows.common.event_data``);
    the API decodes the data with it too before it signals. ``fields`` gives
    the API's type of a data field where the dataclass takes any value to
    judge it itself, or where the policy lists the values (a ticket's new
    priority): the OpenAPI document shows those types and the API refuses
    what they refuse.
    """

    name: str
    data: type | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class ProcessDescriptor:
    """One process as the API, the worker and the CLI see it.

    ``name`` is the ``CrmProcess`` search attribute and the prefix of its
    process ids. A process with a ``start_path`` is started through the API
    with ``request_model(policy)``'s body, which ``build`` turns into the
    workflow's input, raising ``InvalidStart`` for a field the policy or the
    CRM records refuse. One without is started by other processes (approvals).
    """

    name: str
    workflow: type
    title: str
    events: Callable[[Policy], Sequence[EventType]]
    search_attributes: Sequence[SearchAttributeKey[str]] = (PROCESS, CUSTOMER_ID, STAGE)
    start_path: str | None = None
    request_model: Callable[[Policy], type[BaseModel]] | None = None
    build: Callable[[Any, StartContext], Awaitable[ProcessStart]] | None = None

    def process_id(self, business_key: str, tenant: str | None = None) -> str:
        """The run's id: ``{name}-{business_key}``, and ``@{tenant}`` for a tenant's run.

        Two tenants' runs for the same business key are two runs; a key
        cannot hold ``@``, so a tenant's id never equals another's.
        Raises ValueError for a tenant name that cannot be part of an id.
        """
        process_id = f"{self.name}-{business_key}"
        if tenant is None:
            return process_id
        if not re.fullmatch(TENANT_PATTERN, tenant):
            raise ValueError(f"tenant {tenant!r} cannot name a process id")
        return f"{process_id}@{tenant}"

    def event_types(self, policy: Policy) -> dict[str, EventType]:
        """The events this process accepts under ``policy``, by name."""
        return {event.name: event for event in self.events(policy)}


class InvalidStart(Exception):
    """A start request the policy or the CRM records refuse: which field, and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def declare_events(
    data: Mapping[str, type | None],
    descriptions: Mapping[str, str],
    fields: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[EventType]:
    """The ``EventType`` of each event a workflow's ``EVENT_DATA`` names, in its order.

    Raises KeyError for an event without a description.
    """
    fields = fields or {}
    return [
        EventType(name, data_type, fields.get(name, {}), descriptions[name])
        for name, data_type in data.items()
    ]


def no_events(policy: Policy) -> Sequence[EventType]:
    """For a process that takes no business events."""
    return ()


#: The IANA time zones a customer's business calendar may name.
TimeZone: Any = one_of(sorted(zoneinfo.available_timezones()))
