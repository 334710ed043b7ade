"""Taking a record event: enrolling the record where a trigger fires, telling runs that listen.

Each automation of the caller's tenant on the event's object is offered the
event. An active one whose trigger takes it enrols the record (or, when the
record's run is going, sends the event to that run if its definition
listens for events); any other whose runs listen sends it to the record's
run, if one is going. A paused automation enrols nobody, but its runs still
hear of their records. A ``deleted`` event ends the record's going run
(``cancelled``, the deletion its reason), unless the definition that run
keeps waits for deletions; a trigger on deletions enrols a record with no
run going.

The event is taken once per ``(tenant, event_id)``: the first request
claims it and stores its answer; a repeat, even one arriving while the first
is still working, gets that same answer and changes nothing. Under the claim
the run starts are idempotent too (the run id is the business key, the run
takes each event id once), so a claim given up part-way is safe to redo.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cel
from sqlmodel import Session
from temporalio.client import Client

from crm.automations.enrolment import EnrollingVersion, deliver, end_run, enroll, going_run
from crm.domain.automation import AutomationDefinition
from crm.domain.automation_events import enrols, event_names, names_for
from crm.domain.expressions import ExpressionError, bound
from crm.policy import Policy
from crm.store.automations import (
    EnrollingAutomation,
    EventClaim,
    answer_event,
    claim_event,
    definition_of,
    enrolling_on,
    give_up_event,
    receipt_of,
    version_of,
)
from crm.store.db import Database
from workflows.automation_types import RecordEvent, automation_run_id


class EventRefused(Exception):
    """An event not taken: its id was used for another event (``event-id-reused``), or the
    request taking it is still at work (``event-in-progress``: send it again later)."""

    def __init__(self, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.title = title
        self.detail = detail


#: How long a repeat of an event waits for the answer of the request taking it.
ANSWER_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class EventSettings:
    """What taking an event needs besides the event: where runs go and what they count in."""

    database: Database
    policy: Policy
    task_queue: str


def _combined(event_id: str, offers: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an event: the runs it enrolled, reached and ended, the skips and the
    errors."""
    lists = ("enrolled", "delivered", "ended", "skipped", "errors")
    return {"event_id": event_id, **_merged({key: [] for key in lists}, *offers)}


async def take_record_event(
    client: Client,
    settings: EventSettings,
    tenant: str | None,
    event: RecordEvent,
    *,
    id_names_the_event: bool = False,
) -> dict[str, Any]:
    """Take ``event`` for ``tenant`` once, and answer what it did (the stored answer of a repeat).

    With ``id_names_the_event`` a repeat of the id is the same event whatever its body (a
    process's outcome: the id names the run and the step, and a workflow task that ran the
    offer again before it was recorded builds it at a later instant); otherwise a body
    unlike the first is refused.

    Raises EventRefused when ``event.event_id`` was used for another event, or
    when the first request with it is still at work after ``ANSWER_WAIT_SECONDS``;
    TemporalUnavailable when Temporal cannot be reached (nothing is stored; the
    event may be sent again).
    """
    database = settings.database
    fingerprint = _fingerprint(event)
    deadline = time.monotonic() + ANSWER_WAIT_SECONDS
    while True:
        claim, automations = await database.run(
            lambda session: _claim_and_read(session, tenant, event, fingerprint)
        )
        receipt_id = claim.receipt.id
        assert receipt_id is not None
        if claim.receipt.body_sha256 != fingerprint and not id_names_the_event:
            raise EventRefused(
                "event-id-reused",
                "Event id used for another event",
                f"event {event.event_id!r} was taken with another body; "
                "each event needs an id of its own",
            )
        if automations is not None:
            return await _act_once(client, settings, tenant, event, receipt_id, automations)
        answer = await _answer_of(database, receipt_id, deadline)
        if answer is not None:
            return answer


def _claim_and_read(
    session: Session, tenant: str | None, event: RecordEvent, fingerprint: str
) -> tuple[EventClaim, list[EnrollingAutomation] | None]:
    """Claim the event and, when claimed, read the automations it is offered to: one
    transaction for both."""
    claim = claim_event(session, tenant, event.event_id, fingerprint)
    if not claim.claimed or claim.receipt.body_sha256 != fingerprint:
        return claim, None
    return claim, enrolling_on(session, tenant, event.object)


async def _answer_of(database: Database, receipt_id: int, deadline: float) -> dict[str, Any] | None:
    """The answer another request stores for its claim; None when it gives the claim up.

    Raises EventRefused when there is none by ``deadline`` (``time.monotonic()``).
    """
    pause = 0.02
    while time.monotonic() < deadline:
        receipt = await database.run(lambda session: receipt_of(session, receipt_id), write=False)
        if receipt is None:
            return None
        if receipt.answer is not None:
            return receipt.answer
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)
    raise EventRefused(
        "event-in-progress",
        "Event still being taken",
        "another request is taking the event; send it again later",
    )


async def _act_once(
    client: Client,
    settings: EventSettings,
    tenant: str | None,
    event: RecordEvent,
    receipt_id: int,
    automations: list[EnrollingAutomation],
) -> dict[str, Any]:
    database = settings.database
    try:
        answer = await offer_event(client, settings, tenant, event, automations)
    except BaseException:
        await database.run(lambda session: give_up_event(session, receipt_id))
        raise
    await database.run(lambda session: answer_event(session, receipt_id, answer))
    return answer


async def offer_event(
    client: Client,
    settings: EventSettings,
    tenant: str | None,
    event: RecordEvent,
    automations: list[EnrollingAutomation],
) -> dict[str, Any]:
    """Offer ``event`` to ``automations``, those of ``tenant`` on its object; the answer.

    Triggers are matched in the API's own code first; only the automations that
    enrol the record or listen for its events cost a call to Temporal (and, for a
    deletion, each one: it may have a run going on the record).
    """
    matching = _Matching(event)
    offers: list[dict[str, Any]] = []
    calls = []
    for automation in automations:
        if automation.state == "draft":
            continue
        triggered, offer = matching.trigger(automation)
        if event.type == "deleted":
            calls.append(_deletion(client, settings, tenant, event, automation, triggered, offer))
        elif triggered or automation.definition.listens():
            calls.append(_act(client, settings, tenant, event, automation, triggered, offer))
        else:
            offers.append(offer)
    offers += await asyncio.gather(*calls)
    return _combined(event.event_id, offers)


class _Matching:
    """One event's trigger matching: the names its expressions see are bound once per
    distinct set of field types, not once per automation."""

    def __init__(self, event: RecordEvent) -> None:
        self._event = event
        self._changed = event.changed()
        self._bound: dict[tuple[tuple[str, str], ...], cel.Context] = {}

    def trigger(self, automation: EnrollingAutomation) -> tuple[bool, dict[str, Any]]:
        """Whether ``automation``'s trigger takes the event, and the offer's errors so far."""
        if automation.state != "active":
            return False, {}
        definition = automation.definition
        event = self._event
        try:
            return enrols(definition, event.type, self._changed, self._names(definition)), {}
        except ExpressionError as err:
            return False, {
                "errors": [{"automation_id": automation.automation_id, "message": str(err)}]
            }

    def _names(self, definition: AutomationDefinition) -> cel.Context:
        types = tuple(sorted(definition.fields.items()))
        names = self._bound.get(types)
        if names is None:
            event = self._event
            names = self._bound[types] = bound(
                names_for(
                    definition,
                    record=event.record,
                    previous=event.previous,
                    event=event_names(event.type, event.occurred_at, self._changed),
                    variables={},
                    now=event.occurred_at,
                )
            )
        return names


async def _act(
    client: Client,
    settings: EventSettings,
    tenant: str | None,
    event: RecordEvent,
    automation: EnrollingAutomation,
    triggered: bool,
    offer: dict[str, Any],
) -> dict[str, Any]:
    """Enrol the record (``triggered``) or deliver the event to its run, if one listens."""
    automation_id, definition = automation.automation_id, automation.definition
    calendar = settings.policy.calendars.get(definition.calendar)
    if calendar is None:
        message = f"calendar {definition.calendar!r} is not in the policy"
        return {"errors": [{"automation_id": automation_id, "message": message}]}
    enrolling = EnrollingVersion(
        tenant, automation_id, automation.active_version, definition, calendar.spec()
    )
    run_id = enrolling.run_id(event.record_id)
    if triggered:
        outcome = await enroll(
            client,
            enrolling,
            event.record_id,
            event.record,
            event=event,
            task_queue=settings.task_queue,
            now=datetime.now(UTC),
        )
        if outcome.skipped is None:
            return {"enrolled": [run_id]}
        if outcome.skipped != "running" or not definition.listens():
            skip = {"automation_id": automation_id, "run_id": run_id, "reason": outcome.skipped}
            return {"skipped": [skip]}
    if await deliver(client, run_id, event):
        offer["delivered"] = [run_id]
    return offer


async def _deletion(
    client: Client,
    settings: EventSettings,
    tenant: str | None,
    event: RecordEvent,
    automation: EnrollingAutomation,
    triggered: bool,
    offer: dict[str, Any],
) -> dict[str, Any]:
    """A ``deleted`` record's going run ends (``cancelled``, the deletion its reason: its
    steps do not go on about a record that is gone), unless the definition it runs waits
    for deletions, when it hears the event like any other; then a trigger on deletions
    enrols the record, which a run still ending holds back (``skipped``: running)."""
    definition = automation.definition
    run_id = automation_run_id(automation.automation_id, definition.object, event.record_id, tenant)
    going = await going_run(client, run_id, automation.automation_id, event.record_id, tenant)
    if going is not None:
        runs = await _definition_of(settings.database, tenant, automation, going.version)
        if not runs.waits_for("deleted"):
            await end_run(client, going, f"the record was deleted (event {event.event_id})")
            ended = {"ended": [run_id]}
            if not triggered:
                return _merged(offer, ended)
            acted = await _act(client, settings, tenant, event, automation, True, {})
            return _merged(offer, ended, {key: v for key, v in acted.items() if key != "delivered"})
    if triggered or going is not None:
        return await _act(client, settings, tenant, event, automation, triggered, offer)
    return offer


async def _definition_of(
    database: Database, tenant: str | None, automation: EnrollingAutomation, version: int
) -> AutomationDefinition:
    """The definition of the automation's ``version`` (a run keeps the version it began on)."""
    if version == automation.active_version:
        return automation.definition
    stored = await database.run(
        lambda session: version_of(session, tenant, automation.automation_id, version),
        write=False,
    )
    return definition_of(stored) if stored is not None else automation.definition


def _merged(*offers: dict[str, Any]) -> dict[str, Any]:
    """The offers' lists (enrolled, ended, skipped, errors...) joined key by key."""
    merged: dict[str, Any] = {}
    for offer in offers:
        for key, values in offer.items():
            merged.setdefault(key, []).extend(values)
    return merged


def _fingerprint(event: RecordEvent) -> str:
    """The SHA-256 of the event as the API read it: equal for equal events, however encoded."""
    body = {
        "object": event.object,
        "record_id": event.record_id,
        "type": event.type,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "record": event.record,
        "previous": event.previous,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
