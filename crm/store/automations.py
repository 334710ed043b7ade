"""Automations and their versions, and the record events the API took, in the CRM database.

An automation belongs to a tenant (``NO_TENANT`` for principals of none) and
has numbered versions that never change: saving a definition makes the next
version unless it is the latest one again. Its state moves
``draft -> active <-> paused``, and to ``archived`` from any state, for good.

A record event is taken once per ``(tenant, event_id)``: the first request
claims it with a receipt whose answer is empty until that request stores
it; a repeat reads the answer instead of acting again.

Every function here is a unit of work's body: it takes the session
``Database.run`` gives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import TypeAdapter
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from crm.domain.automation import AutomationDefinition
from crm.store.models import (
    NO_TENANT,
    Automation,
    AutomationVersion,
    RecordEventReceipt,
    as_utc,
    utcnow,
)

#: A receipt still without an answer this long after its claim is taken as
#: abandoned (the request that claimed it died), and the next request claims it.
CLAIM_EXPIRES_AFTER = timedelta(seconds=30)

_DEFINITION: TypeAdapter[AutomationDefinition] = TypeAdapter(AutomationDefinition)

Transition = Literal["activate", "pause", "archive"]


class AutomationStateError(Exception):
    """The automation cannot make the transition from its state (``reason`` says why)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def tenant_key(tenant: str | None) -> str:
    """The ``tenant`` column's value for a principal's tenant."""
    return tenant if tenant is not None else NO_TENANT


def normalized(definition: AutomationDefinition) -> dict[str, Any]:
    """``definition`` as JSON, every default filled in: what a version stores for its runs."""
    document: dict[str, Any] = _DEFINITION.dump_python(definition, mode="json")
    return document


#: Versions are immutable, so each is read into a definition once per process.
_READ: dict[tuple[str, str, int], AutomationDefinition] = {}


def definition_of(version: AutomationVersion) -> AutomationDefinition:
    """The definition a stored version holds (read once per process: versions never change)."""
    key = (version.tenant, version.automation_id, version.version)
    definition = _READ.get(key)
    if definition is None:
        definition = _READ[key] = _DEFINITION.validate_python(version.definition)
    return definition


def save_version(
    session: Session,
    tenant: str | None,
    definition: AutomationDefinition,
    document: dict[str, Any],
    by: str,
) -> tuple[Automation, AutomationVersion, bool]:
    """Store ``definition`` as the next version of its automation, creating it as a draft.

    Returns the automation, the version and whether it is new: a definition
    equal to the latest version's is that version. Raises AutomationStateError
    for an archived automation. Two saves of one automation at once: one of
    them raises IntegrityError (retry it).
    """
    key = tenant_key(tenant)
    automation = _automation(session, key, definition.id, for_update=True)
    content = normalized(definition)
    now = utcnow()
    if automation is None:
        automation = Automation(
            tenant=key,
            automation_id=definition.id,
            name=definition.name,
            object=definition.object,
            latest_version=0,
        )
    elif automation.state == "archived":
        raise AutomationStateError(
            "archived", f"automation {definition.id!r} is archived and takes no new versions"
        )
    else:
        latest = version_of(session, tenant, definition.id, automation.latest_version)
        if latest is not None and latest.definition == content:
            return automation, latest, False
    version = AutomationVersion(
        tenant=key,
        automation_id=definition.id,
        version=automation.latest_version + 1,
        document=document,
        definition=content,
        created_by=by,
    )
    automation.latest_version = version.version
    if automation.active_version is None:  # else they stay the enrolling version's
        automation.name = definition.name
        automation.object = definition.object
    automation.updated_at = now
    session.add(automation)
    session.add(version)
    session.flush()
    return automation, version, True


def automation_of(session: Session, tenant: str | None, automation_id: str) -> Automation | None:
    """The tenant's automation ``automation_id``, or None."""
    return _automation(session, tenant_key(tenant), automation_id)


def automations_of(session: Session, tenant: str | None) -> list[Automation]:
    """The tenant's automations, by id."""
    query = (
        select(Automation)
        .where(Automation.tenant == tenant_key(tenant))
        .order_by(col(Automation.automation_id))
    )
    return list(session.exec(query))


def version_of(
    session: Session, tenant: str | None, automation_id: str, version: int
) -> AutomationVersion | None:
    """Version ``version`` of the tenant's automation ``automation_id``, or None."""
    query = select(AutomationVersion).where(
        AutomationVersion.tenant == tenant_key(tenant),
        AutomationVersion.automation_id == automation_id,
        AutomationVersion.version == version,
    )
    return session.exec(query).first()


def versions_of(
    session: Session, tenant: str | None, automation_id: str
) -> list[AutomationVersion]:
    """Every version of the tenant's automation ``automation_id``, oldest first."""
    query = (
        select(AutomationVersion)
        .where(
            AutomationVersion.tenant == tenant_key(tenant),
            AutomationVersion.automation_id == automation_id,
        )
        .order_by(col(AutomationVersion.version))
    )
    return list(session.exec(query))


def change_state(
    session: Session,
    tenant: str | None,
    automation_id: str,
    transition: Transition,
    version: int | None = None,
) -> Automation | None:
    """Make ``transition`` on the tenant's automation; None when there is no such automation.

    ``activate`` makes ``version`` (default: the latest) the one that enrols
    records; ``pause`` stops enrolling (a paused automation stays paused);
    ``archive`` stops it for good. Raises AutomationStateError for an archived
    automation's activation or pause, a draft's pause, or a version it does
    not have.
    """
    automation = _automation(session, tenant_key(tenant), automation_id, for_update=True)
    if automation is None:
        return None
    if transition == "archive":
        automation.state = "archived"
    elif automation.state == "archived":
        raise AutomationStateError(
            "archived", f"automation {automation_id!r} is archived and cannot be {transition}d"
        )
    elif transition == "pause":
        if automation.state == "draft":
            raise AutomationStateError("draft", f"automation {automation_id!r} was never activated")
        automation.state = "paused"
    else:
        chosen = version if version is not None else automation.latest_version
        stored = version_of(session, tenant, automation_id, chosen)
        if stored is None:
            raise AutomationStateError(
                "no-such-version", f"automation {automation_id!r} has no version {chosen}"
            )
        automation.state = "active"
        automation.active_version = chosen
        automation.name = stored.definition["name"]
        automation.object = stored.definition["object"]
    automation.updated_at = utcnow()
    session.add(automation)
    return automation


@dataclass(frozen=True)
class EnrollingAutomation:
    """An automation that enrols (or enrolled) records: its state and the definition of the
    version that does (``active_version``)."""

    automation_id: str
    state: str
    active_version: int
    definition: AutomationDefinition


#: The enrolling automations of each (tenant, object), with the stamp they were read at and
#: when (``time.monotonic()``).
_ENROLLING: dict[tuple[str, str], tuple[tuple[int, Any], float, list[EnrollingAutomation]]] = {}
#: Read again after this long whatever the stamp says: a backstop against the clock of
#: another API process lagging behind (its ``updated_at`` below the latest).
ENROLLING_REREAD_SECONDS = 5.0


def enrolling_on(
    session: Session, tenant: str | None, object_name: str
) -> list[EnrollingAutomation]:
    """The tenant's automations on ``object_name`` that ever enrolled records, by id.

    Every state change or new version touches an automation's ``updated_at``, so
    the automations are read again only when the count or the latest
    ``updated_at`` of the tenant's automations on the object changed (one small
    query per event, whichever API process made the change), and at least every
    ``ENROLLING_REREAD_SECONDS``; a version's definition is read once per process
    (versions never change).
    """
    key = (tenant_key(tenant), object_name)
    scope = (Automation.tenant == key[0], Automation.object == object_name)
    counted = session.exec(
        select(func.count(), func.max(Automation.updated_at)).where(*scope)
    ).one()
    stamp = (int(counted[0]), counted[1])
    cached = _ENROLLING.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] == stamp and now - cached[1] < ENROLLING_REREAD_SECONDS:
        return cached[2]
    query = (
        select(Automation)
        .where(*scope, col(Automation.active_version).is_not(None))
        .order_by(col(Automation.automation_id))
    )
    enrolling = []
    for automation in session.exec(query):
        assert automation.active_version is not None
        definition = _READ.get(
            (automation.tenant, automation.automation_id, automation.active_version)
        )
        if definition is None:
            version = version_of(
                session, automation.tenant, automation.automation_id, automation.active_version
            )
            if version is None:  # the row went between the two reads: not enrolling
                continue
            definition = definition_of(version)
        enrolling.append(
            EnrollingAutomation(
                automation.automation_id, automation.state, automation.active_version, definition
            )
        )
    _ENROLLING[key] = (stamp, now, enrolling)
    return enrolling


@dataclass(frozen=True)
class EventClaim:
    """What a request found for its record event: to act on it, or another's receipt."""

    receipt: RecordEventReceipt
    claimed: bool


def claim_event(
    session: Session, tenant: str | None, event_id: str, body_sha256: str
) -> EventClaim:
    """Claim the record event ``event_id`` for this request, or find who has it.

    One ``INSERT .. ON CONFLICT DO NOTHING``: of requests racing with one
    event, exactly one claims it. A claim left without an answer for
    ``CLAIM_EXPIRES_AFTER`` passes to the next request that asks.
    """
    key = tenant_key(tenant)
    now = utcnow()
    table: Any = RecordEventReceipt.__table__  # type: ignore[attr-defined]
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[session.connection().dialect.name]
    statement = (
        dialect.insert(table)
        .values(tenant=key, event_id=event_id, body_sha256=body_sha256, created_at=now)
        .on_conflict_do_nothing(index_elements=["tenant", "event_id"])
        .returning(table.c.id)
    )
    inserted = session.connection().execute(statement).scalar()
    if inserted is not None:
        claimed = RecordEventReceipt(
            id=inserted, tenant=key, event_id=event_id, body_sha256=body_sha256, created_at=now
        )
        return EventClaim(claimed, claimed=True)
    receipt = session.exec(
        select(RecordEventReceipt).where(
            RecordEventReceipt.tenant == key, RecordEventReceipt.event_id == event_id
        )
    ).one()
    abandoned = receipt.answer is None and as_utc(receipt.created_at) < now - CLAIM_EXPIRES_AFTER
    if abandoned and receipt.body_sha256 == body_sha256:
        taken = session.connection().execute(
            update(table)
            .where(table.c.id == receipt.id, table.c.created_at == receipt.created_at)
            .values(created_at=now)
        )
        if taken.rowcount == 1:
            receipt.created_at = now
            return EventClaim(receipt, claimed=True)
    return EventClaim(receipt, claimed=False)


def receipt_of(session: Session, receipt_id: int) -> RecordEventReceipt | None:
    """The receipt ``receipt_id``, or None once its claim was given up."""
    return session.get(RecordEventReceipt, receipt_id)


def answer_event(session: Session, receipt_id: int, answer: dict[str, Any]) -> None:
    """Store the answer to the claimed event of receipt ``receipt_id``."""
    session.exec(
        update(RecordEventReceipt)
        .where(col(RecordEventReceipt.id) == receipt_id)
        .values(answer=answer, answered_at=utcnow())
    )


def give_up_event(session: Session, receipt_id: int) -> None:
    """Drop an unanswered claim, so that a retry of the event claims it afresh."""
    receipt = session.get(RecordEventReceipt, receipt_id)
    if receipt is not None and receipt.answer is None:
        session.delete(receipt)


def _automation(
    session: Session, key: str, automation_id: str, *, for_update: bool = False
) -> Automation | None:
    query = select(Automation).where(
        Automation.tenant == key, Automation.automation_id == automation_id
    )
    if for_update:
        query = query.with_for_update()
    return session.exec(query).first()
