"""Which record events an automation takes: the ones that enrol a record, and those a run
waits for.

The API asks ``enrols`` of each active automation on the event's object; a
run asks ``matches`` of its wait. Both are pure and evaluate CEL conditions
over the names ``names_for`` gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crm.domain.automation import AutomationDefinition, EventMatch
from crm.domain.expressions import Names, holds, typed_fields


def names_for(
    definition: AutomationDefinition,
    *,
    record: Mapping[str, Any],
    previous: Mapping[str, Any],
    event: Mapping[str, Any],
    variables: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The names a definition's expressions are evaluated with."""
    return {
        "record": typed_fields(record, definition.fields),
        "previous": typed_fields(previous, definition.fields),
        "event": dict(event),
        "vars": dict(variables),
        "now": now,
    }


def event_names(event_type: str, occurred_at: datetime, changed: Sequence[str]) -> dict[str, Any]:
    """What ``event`` is in an expression: its ``type``, ``occurred_at`` and ``changed`` fields."""
    return {"type": event_type, "occurred_at": occurred_at, "changed": list(changed)}


def enrols(
    definition: AutomationDefinition,
    event_type: str,
    changed: Sequence[str],
    names: Names,
) -> bool:
    """Whether an event of ``event_type`` changing ``changed`` enrols its record.

    A scheduled automation's records enrol at its instants, never by an event.
    Raises ExpressionError when the trigger's condition cannot be evaluated on
    the event's data.
    """
    if definition.trigger.schedule is not None:
        return False
    return _fits(definition.trigger, event_type, changed, names)


def matches(match: EventMatch, event_type: str, changed: Sequence[str], names: Names) -> bool:
    """Whether an event is the one a wait waits for; raises ExpressionError like ``enrols``."""
    return _fits(match, event_type, changed, names)


def _fits(match: EventMatch, event_type: str, changed: Sequence[str], names: Names) -> bool:
    if match.types and event_type not in match.types:
        return False
    if match.changed and not set(match.changed).intersection(changed):
        return False
    return match.condition is None or holds(match.condition, names)
