"""The activity behind the attention watch: what needs attention now, and what is new.

It reads the list as an operator of no tenant sees it (``api.attention``),
records it (``crm.store.attention``), and emits an ``attention.raised``
webhook event for each new item to the endpoints of the item's tenant (a
tenant's run ids end in ``@tenant``). Safe to retry: a repeat of the same
look answers the same items and emits the same event ids.
"""

from __future__ import annotations

from temporalio import activity

from activities.webhook_delivery import emit_event
from api.attention import AttentionItem, needs_attention
from crm.platform.principals import Principal
from crm.platform.settings import Settings
from crm.store.attention import item_key, note_items
from crm.store.db import Database
from crm.store.models import utcnow
from crm.store.webhooks import Emitted
from workflows.attention_types import (
    CHECK_ATTENTION,
    AttentionCheck,
    AttentionChecked,
    RaisedItem,
)

#: Whom the watch reads the list as: every tenant's items, as support sees them.
WATCHER = Principal(id="attention-watch", roles=frozenset({"support"}))


class AttentionActivities:
    """Checks the needs-attention list with the worker's database and settings."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings

    @activity.defn(name=CHECK_ATTENTION)
    async def check_attention(self, check: AttentionCheck) -> AttentionChecked:
        """The items open now and those new since the previous look; each new one emitted
        as ``attention.raised``. Raises TemporalUnavailable (retried) when Temporal cannot
        be reached."""
        client = activity.client()
        items = await needs_attention(client, self._database, self._settings, WATCHER)
        now = utcnow()
        raised: list[AttentionItem] = await self._database.run(
            lambda session: note_items(session, check.watch_id, items, now)
        )
        for item in raised:
            await emit_event(
                client,
                self._database,
                self._settings.task_queue,
                Emitted(
                    tenant=_tenant_of(item.process_id),
                    event_id=f"{check.watch_id}/raised/{item_key(item)[:16]}",
                    type="attention.raised",
                    process_id=item.process_id or "",
                    occurred_at=now,
                    data={
                        "process_id": item.process_id,
                        "kind": item.kind,
                        "subject": item.subject,
                        "problem": item.problem,
                        "since": item.since.isoformat() if item.since else None,
                        "actions": item.actions,
                    },
                ),
            )
        return AttentionChecked(
            open_items=len(items),
            raised=[
                RaisedItem(
                    kind=item.kind,
                    process_id=item.process_id,
                    subject=item.subject,
                    problem=item.problem,
                    since=item.since,
                    actions=list(item.actions),
                )
                for item in raised
            ],
        )


def _tenant_of(process_id: str | None) -> str | None:
    """The tenant a run belongs to: what follows ``@`` in its id (no business key has one)."""
    if process_id is None or "@" not in process_id:
        return None
    return process_id.rpartition("@")[2]
