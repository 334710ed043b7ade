"""What the attention watch has seen: each item once, from when it appeared until it is gone.

An item is known by its kind, process and subject. A look records the items
open now and answers those that were not open at the previous look; an item
that is gone is closed, so if it comes back it is new again. A look retried
after it wrote (its activity's next attempt) answers what it answered first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import Column, DateTime
from sqlmodel import Field, Session, SQLModel, col, select

from crm.store.models import no_time_yet


class Item(Protocol):
    """What the watch keeps of an attention item."""

    @property
    def kind(self) -> str: ...
    @property
    def process_id(self) -> str | None: ...
    @property
    def subject(self) -> str: ...


class AttentionSeen(SQLModel, table=True):
    """An attention item the watch saw: when it appeared, and when it went (None: open)."""

    __tablename__ = "attention_seen"

    id: int | None = Field(default=None, primary_key=True)
    item_key: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=50)
    process_id: str | None = Field(default=None, max_length=300)
    subject: str = Field(max_length=500)
    #: The look (the watch run's id) that saw it first.
    raised_by: str = Field(max_length=300)
    first_seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    gone_at: datetime | None = no_time_yet()


def item_key(item: Item) -> str:
    """The stable key of an item: its kind, process and subject."""
    text = f"{item.kind}\x1f{item.process_id or ''}\x1f{item.subject}"
    return hashlib.sha256(text.encode()).hexdigest()


ItemT = TypeVar("ItemT", bound=Item)


def note_items(session: Session, look: str, items: Sequence[ItemT], now: datetime) -> list[ItemT]:
    """Record the items open at ``look`` (at ``now``); those that were not open before it,
    in their order. A repeat of the same look answers the same."""
    open_rows = session.exec(
        select(AttentionSeen).where(col(AttentionSeen.gone_at).is_(None))
    ).all()
    known = {row.item_key: row for row in open_rows}
    current = {item_key(item): item for item in items}
    for key, row in known.items():
        if key not in current:
            row.gone_at = now
            session.add(row)
    raised = []
    for key, item in current.items():
        if key in known:
            if known[key].raised_by == look:  # this look's earlier attempt saw it first
                raised.append(item)
            continue
        session.add(
            AttentionSeen(
                item_key=key,
                kind=item.kind,
                process_id=item.process_id,
                subject=item.subject[:500],
                raised_by=look,
                first_seen_at=now,
            )
        )
        raised.append(item)
    return raised
