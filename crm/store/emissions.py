"""Events emitted at the same time, stored in one transaction (a group commit).

Every emission is a write transaction (``crm.store.webhooks.emit``), and on
SQLite writers queue for one lock, each paying for its own begin and commit.
``store_event`` queues an event behind the transaction being written, if
any, and the events queued meanwhile are stored together in the next one:
a burst of emissions costs a few transactions, and a lone event is stored at
once. When a shared transaction fails on an event's data, each of its events
is stored alone, so one bad event fails only its own caller; when the
database fails it (unreachable, locked too long), every caller hears of it.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from dataclasses import dataclass, field

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from crm.store.db import Database
from crm.store.webhooks import Emitted, emit_all, undrained

#: The most events one transaction stores.
MOST_AT_ONCE = 100


@dataclass(frozen=True)
class Stored:
    """The endpoints an event goes to, and those of them whose dispatchers must be woken
    (no drain is running that will take it)."""

    endpoints: list[str]
    to_wake: list[str]


async def store_event(database: Database, event: Emitted) -> Stored:
    """Store ``event`` and its deliveries (with the events emitted meanwhile); where it
    goes. Safe to repeat."""
    queue = _queue_of(database)
    done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
    queue.waiting.append((event, done))
    if queue.writer is None or queue.writer.done():
        # A context of its own: what it logs is no one caller's.
        queue.writer = asyncio.create_task(_write(database, queue), context=contextvars.Context())
    return await done


def store_all(session: Session, events: list[Emitted]) -> list[Stored]:
    """Store ``events`` in ``session``'s transaction; where each goes."""
    reached = emit_all(session, events)
    to_wake = set(undrained(session, sorted({e for endpoints in reached for e in endpoints})))
    return [Stored(endpoints, [e for e in endpoints if e in to_wake]) for endpoints in reached]


@dataclass
class _Queue:
    loop: asyncio.AbstractEventLoop
    waiting: list[tuple[Emitted, asyncio.Future[Stored]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


_QUEUES: weakref.WeakKeyDictionary[Database, _Queue] = weakref.WeakKeyDictionary()


def _queue_of(database: Database) -> _Queue:
    loop = asyncio.get_running_loop()
    queue = _QUEUES.get(database)
    if queue is None or queue.loop is not loop:  # futures belong to one loop
        queue = _QUEUES[database] = _Queue(loop)
    return queue


async def _write(database: Database, queue: _Queue) -> None:
    batch: list[tuple[Emitted, asyncio.Future[Stored]]] = []
    try:
        while queue.waiting:
            batch = queue.waiting[:MOST_AT_ONCE]
            del queue.waiting[:MOST_AT_ONCE]
            await _store_batch(database, batch)
    except BaseException:  # cancelled with its loop: no caller waits for ever
        for _, done in [*batch, *queue.waiting]:
            done.cancel()
        raise
    finally:
        queue.writer = None


async def _store_batch(
    database: Database, batch: list[tuple[Emitted, asyncio.Future[Stored]]]
) -> None:
    events = [event for event, _ in batch]
    try:
        stored = await database.run(lambda session: store_all(session, events))
    except OperationalError as error:  # the database, not an event: each would fail alike
        for _, done in batch:
            _settle(done, error=error)
        return
    except Exception as error:
        if len(batch) == 1:
            _settle(batch[0][1], error=error)
            return
        for one in batch:  # alone, so only a bad event's caller hears of it
            await _store_batch(database, [one])
        return
    for (_, done), where in zip(batch, stored, strict=True):
        _settle(done, result=where)


def _settle(
    done: asyncio.Future[Stored], *, result: Stored | None = None, error: Exception | None = None
) -> None:
    if done.done():  # its caller was cancelled
        return
    if error is not None:
        done.set_exception(error)
    else:
        assert result is not None
        done.set_result(result)
