"""The suppression list: addresses that no email of a category may go to.

``suppress`` adds an address (idempotent: the first reason is kept);
``suppression_of`` says whether an email of a class may go to an address. A
marketing unsubscribe or a complaint suppresses ``marketing`` mail only, so
a ticket's escalation or a renewal confirmation still reaches the person; a
hard bounce suppresses ``all`` mail, since the address does not exist.
"""

from __future__ import annotations

import secrets

from sqlalchemy import func
from sqlmodel import Session, col, select

from crm.store.db import insert_once
from crm.store.models import EmailLinkKey, EmailSuppression

#: Suppression categories; ``all`` holds transactional mail back too.
CATEGORIES = ("marketing", "all")


def normal_address(address: str) -> str:
    """An address as the list keys it: trimmed and lower-cased."""
    return address.strip().lower()


def suppress(
    session: Session,
    address: str,
    category: str,
    reason: str,
    *,
    process_id: str | None = None,
    message_id: str | None = None,
) -> bool:
    """Put ``address`` on the list for ``category``; False when it was already on it.

    Raises ValueError for a category other than ``marketing`` or ``all``.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown suppression category {category!r}")
    normal = normal_address(address)
    row = EmailSuppression(
        key=f"{category}:{normal}",
        address=normal,
        category=category,
        reason=reason,
        process_id=process_id,
        message_id=message_id,
    )
    _, inserted = insert_once(session, row)
    return inserted


def suppression_of(session: Session, address: str, email_class: str) -> EmailSuppression | None:
    """The entry that holds back an email of ``email_class`` to ``address``, or None."""
    categories = ["all", "marketing"] if email_class == "marketing" else ["all"]
    rows = session.exec(
        select(EmailSuppression).where(
            col(EmailSuppression.address) == normal_address(address),
            col(EmailSuppression.category).in_(categories),
        )
    ).all()
    return min(rows, key=lambda row: categories.index(row.category), default=None)


def suppressions_of(session: Session, address: str) -> list[EmailSuppression]:
    """Every entry of ``address``, oldest first."""
    return list(
        session.exec(
            select(EmailSuppression)
            .where(func.lower(col(EmailSuppression.address)) == normal_address(address))
            .order_by(col(EmailSuppression.id))
        ).all()
    )


def link_secret(session: Session) -> str:
    """The database's link-signing secret, made on first use (every worker and API reads
    the same one)."""
    row, _ = insert_once(session, EmailLinkKey(key="email-links", secret=secrets.token_hex(32)))
    return row.secret
