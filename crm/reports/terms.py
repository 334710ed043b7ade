"""Renewal terms for the renewals report: what is due when, and what is still open.

A term's facts keep one ``RenewalTerm`` row: ``renewal.term_started`` opens it
and adds the term to the ``due`` and ``value_due`` counts of its renewal
date's day in the renewals roll-ups (``due_contribution``), and to the
``open_due`` and ``open_value_due`` counts; ``renewal.date_changed`` moves
both to the new day; the term's outcome ends it and takes it back from the
open counts. ``open_terms_due`` sums the open counts of the roll-ups that cover
the coming days (a few week and day rows, through their unique index), so its
cost follows the days, not the terms stored.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col
from sqlmodel import select as select_rows

from crm.reports.rollups import WHOLE, Contribution, cover, read_rollups
from crm.store.db import insert_once
from crm.store.models import ProcessOutcome, RenewalTerm, as_utc

#: The outcomes that end a term.
TERM_ENDS = ("renewed", "auto_renewed", "lapsed", "cancelled")

#: How far ahead the renewals report looks for open terms.
DUE_WITHIN = timedelta(days=90)


def follow_term(session: Session, fact: ProcessOutcome) -> list[Contribution]:
    """Open, move or end the term of a renewal fact; what that adds to the renewals report
    beyond the fact's own contribution (a term's due counts on its renewal date)."""
    term = fact.detail.get("term")
    if fact.process != "renewal" or not isinstance(term, int):
        return []
    key = f"{fact.tenant}/{fact.process_id}/term{term}"
    if fact.outcome == "term_started":
        row, created = insert_once(session, _term_row(key, fact, term))
        return [due_contribution(row, 1)] if created else []
    if fact.outcome == "date_changed":
        opened = _open_term(session, key)
        moved = _instant(fact.detail.get("renewal_date"))
        if opened is None or moved is None or moved == as_utc(opened.renewal_date):
            return []
        before = due_contribution(opened, -1)
        opened.renewal_date = moved
        session.add(opened)
        return [before, due_contribution(opened, 1)]
    if fact.outcome in TERM_ENDS:
        ended_at = as_utc(fact.occurred_at)
        ending = _open_term(session, key)
        if ending is None:  # never opened, or ended before: stored ended, once
            row = _term_row(key, fact, term)
            row.outcome, row.ended_at = fact.outcome, ended_at
            insert_once(session, row)
            return []
        ending.outcome, ending.ended_at = fact.outcome, ended_at
        session.add(ending)
        return [due_contribution(ending, -1, still_due=False)]
    return []


def due_contribution(row: RenewalTerm, sign: int, *, still_due: bool = True) -> Contribution:
    """An open term due on its renewal date's day (``sign`` -1 takes it back from that
    day); with ``still_due`` False, only its being open is taken back (it ended)."""
    value = sign * row.annual_value
    counts: dict[str, float] = {"open_due": sign, "open_value_due": value}
    if still_due:
        counts |= {"due": sign, "value_due": value}
    return Contribution(
        report="renewals",
        tenant=row.tenant,
        day=as_utc(row.renewal_date).date(),
        groups={"plan": row.plan or "", "owner": row.owner_id or ""},
        counts=counts,
    )


def open_terms_due(session: Session, tenant: str, today: date) -> tuple[int, float]:
    """How many open terms of ``tenant`` renew in ``[today, today + DUE_WITHIN)``, and
    their annual value: the open counts of the roll-ups that cover those days."""
    spans = cover(today, today + DUE_WITHIN, "week")
    terms, value = 0.0, 0.0
    for _, _, counts, _ in read_rollups(session, tenant, "renewals", WHOLE, spans):
        terms += counts.get("open_due", 0)
        value += counts.get("open_value_due", 0)
    return round(terms), value


def _term_row(key: str, fact: ProcessOutcome, term: int) -> RenewalTerm:
    return RenewalTerm(
        key=key,
        tenant=fact.tenant,
        process_id=fact.process_id,
        term=term,
        renewal_date=_instant(fact.detail.get("renewal_date")) or as_utc(fact.occurred_at),
        annual_value=fact.annual_value or 0.0,
        plan=fact.plan,
        owner_id=fact.owner_id,
    )


def _open_term(session: Session, key: str) -> RenewalTerm | None:
    query = select_rows(RenewalTerm).where(col(RenewalTerm.key) == key).with_for_update()
    row = session.exec(query).first()
    return row if row is not None and row.ended_at is None else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return as_utc(parsed) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
