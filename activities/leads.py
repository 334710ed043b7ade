"""Activities that keep lead records and hand low-scoring leads to marketing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select
from temporalio import activity

from crm.store.db import Database, insert_once, upsert
from crm.store.models import EmailSuppression, Lead, MarketingListEntry
from crm.store.suppressions import suppress, suppression_of
from workflows.contracts import (
    ADD_TO_MARKETING_LIST,
    SAVE_LEAD,
    LeadRecord,
    LeadSaved,
    MarketingListRequest,
)

#: Lead statuses after which the lead's address is never emailed again.
DO_NOT_EMAIL_STATUSES = ("unsubscribed", "bounced")


class LeadActivities:
    """Writes the ``leads`` and ``marketing_list_entries`` tables; both are safe to retry."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @activity.defn(name=SAVE_LEAD)
    async def save_lead(self, record: LeadRecord) -> LeadSaved:
        """Create the lead's record or overwrite it with ``record`` (idempotent).

        A lead that unsubscribed or bounced puts its address on the suppression
        list (marketing, or all mail for a bounce). The answer says whether the
        address may not be emailed: this or any other lead with the same address
        unsubscribed or bounced, or the address is suppressed for marketing mail
        (a one-click unsubscribe, a complaint, a bounce reported by the relay).
        """
        email: Any = func.lower(col(Lead.email))

        lead = Lead.model_validate(_fields(record))

        def save(session: Session) -> tuple[list[Lead], EmailSuppression | None]:
            upsert(session, lead)
            if not record.email_valid or record.status == "bounced":
                suppress(session, record.email, "all", "lead_bounced", process_id=record.process_id)
            elif record.status == "unsubscribed":
                suppress(
                    session,
                    record.email,
                    "marketing",
                    "lead_unsubscribed",
                    process_id=record.process_id,
                )
            blocked = session.exec(
                select(Lead).where(
                    email == record.email.strip().lower(),
                    or_(
                        col(Lead.status).in_(DO_NOT_EMAIL_STATUSES),
                        col(Lead.email_valid).is_(False),
                    ),
                )
            )
            return list(blocked.all()), suppression_of(session, record.email, "marketing")

        blocked, held = await self._database.run(save)
        reasons = sorted({"bounced" if not row.email_valid else row.status for row in blocked})
        if held is not None:
            reasons.append("bounced" if held.category == "all" else "unsubscribed")
        return LeadSaved(
            lead_id=record.lead_id,
            status=record.status,
            do_not_email=reasons[0] if reasons else None,
        )

    @activity.defn(name=ADD_TO_MARKETING_LIST)
    async def add_to_marketing_list(self, request: MarketingListRequest) -> bool:
        """Put the lead on ``request.list_name``; False when an earlier attempt did."""
        entry = MarketingListEntry(
            key=request.key,
            list_name=request.list_name,
            lead_id=request.lead_id,
            email=request.email,
            name=request.name,
            score=request.score,
        )
        _, inserted = await self._database.run(lambda session: insert_once(session, entry))
        activity.logger.info(
            "lead %s %s list %s",
            request.lead_id,
            "added to" if inserted else "already on",
            request.list_name,
        )
        return inserted


def _fields(record: LeadRecord) -> dict[str, object]:
    return {
        "lead_id": record.lead_id,
        "process_id": record.process_id,
        "email": record.email,
        "name": record.name,
        "company": record.company,
        "title": record.title,
        "country": record.country,
        "industry": record.industry,
        "employees": record.employees,
        "source": record.source,
        "timezone": record.timezone,
        "status": record.status,
        "score": record.score,
        "grade": record.grade,
        "owner_id": record.owner_id,
        "email_valid": record.email_valid,
    }
