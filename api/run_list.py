"""The runs list and a customer's timeline, read for the API and the console alike.

Runs come from Temporal's visibility store by search attributes (see
``api.visibility``), never from a scan of crmflow's tables; a timeline finds
the customer's process ids there and reads their ``audit_entries``. Both are
scoped to the caller's tenant and paged with opaque tokens. The list is in
Temporal's order: running runs first, newest started first, then closed runs,
latest closed first (the SQL visibility store takes no ``ORDER BY``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from temporalio.client import Client, WorkflowExecution

from api.attention import AttentionItem as AttentionItem
from api.attention import needs_attention as needs_attention
from api.page_tokens import id_after, id_token, open_token, seal_token, token_key
from api.visibility import (
    PROCESS_PATTERN,
    STATUSES,
    VALUE_PATTERN,
    checked,
    invalid_query_value,
    list_page,
    list_up_to,
    quoted,
    scoped,
    timestamp,
    visible_to,
)
from api.visibility import web_ui_url as web_ui_url
from crm.platform.principals import Principal
from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.models import AuditEntry, as_utc
from processes import PROCESSES
from processes.starting import status_name
from workflows.common import CUSTOMER_ID, PROCESS, STAGE

#: The processes a run may be of: the registry's, and the automations' runs.
PROCESS_NAMES = (*(process.name for process in PROCESSES), "automation")
#: A ``process`` filter the API takes: one of ``PROCESS_NAMES``.
PROCESS_NAME_PATTERN = f"^({'|'.join(PROCESS_NAMES)})$"
#: The most runs one page of the list holds.
MAX_RUNS_PAGE = 200
#: The most entries one page of a timeline holds.
MAX_TIMELINE_PAGE = 500
#: The most runs of one customer a timeline reads the steps of (newest first).
MAX_TIMELINE_RUNS = 1000


class RunFilters(BaseModel):
    """What the runs list is narrowed to; every filter set must hold."""

    process: str | None = None
    stage: str | None = None
    customer_id: str | None = None
    status: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


class RunSummary(BaseModel):
    """One run as the list shows it, with its page in the Temporal Web UI."""

    process_id: str
    run_id: str
    process: str | None
    stage: str | None
    customer_id: str | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None
    web_ui_url: str


class RunPage(BaseModel):
    """A page of runs; ``next_page_token`` fetches the next (None: this is the last)."""

    runs: list[RunSummary]
    next_page_token: str | None


class TimelineEntry(BaseModel):
    """One step one of the customer's processes took."""

    process_id: str
    process: str | None
    step: str
    detail: dict[str, Any]
    recorded_at: datetime


class TimelinePage(BaseModel):
    """A customer's steps, oldest first; ``next_page_token`` fetches the rest."""

    customer_id: str
    entries: list[TimelineEntry]
    next_page_token: str | None


def run_query(filters: RunFilters, principal: Principal) -> str:
    """The visibility query of ``filters`` within ``principal``'s tenant; raises Problem
    422 naming the filter that is invalid."""
    conditions: list[str] = []
    if filters.process is not None:
        process = checked("process", filters.process, PROCESS_PATTERN)
        if process not in PROCESS_NAMES:
            raise invalid_query_value("process", f"must be one of {', '.join(PROCESS_NAMES)}")
        conditions.append(f"{PROCESS.name} = {quoted(process)}")
    if filters.stage is not None:
        conditions.append(
            f"{STAGE.name} = {quoted(checked('stage', filters.stage, VALUE_PATTERN))}"
        )
    if filters.customer_id is not None:
        customer_id = checked("customer_id", filters.customer_id, VALUE_PATTERN)
        conditions.append(f"{CUSTOMER_ID.name} = {quoted(customer_id)}")
    if filters.status is not None:
        if filters.status not in STATUSES:
            raise invalid_query_value("status", f"must be one of {', '.join(STATUSES)}")
        conditions.append(f"ExecutionStatus = {quoted(STATUSES[filters.status])}")
    if filters.started_after is not None:
        conditions.append(f"StartTime > {timestamp(filters.started_after)}")
    if filters.started_before is not None:
        conditions.append(f"StartTime < {timestamp(filters.started_before)}")
    return scoped(conditions, principal)


async def list_runs(
    client: Client,
    settings: Settings,
    principal: Principal,
    filters: RunFilters,
    page_token: str | None,
    limit: int,
) -> RunPage:
    """A page of at most ``limit`` runs meeting ``filters`` that ``principal`` may see,
    continuing where ``page_token`` (from the previous page, for the same filters) left off.

    Raises Problem 422 naming an invalid filter, a ``limit`` outside 1 to 200 or a
    ``page_token`` this API did not give for these filters; TemporalUnavailable when
    Temporal cannot be reached.
    """
    query = run_query(filters, principal)
    _check_limit(limit, MAX_RUNS_PAGE)
    key = token_key(settings.secret_keys)
    server_token = open_token(key, query, page_token)
    executions, next_server_token = await list_page(client, query, limit, server_token)
    runs = [_summary(run, settings) for run in executions if await visible_to(run, principal)]
    return RunPage(
        runs=runs,
        next_page_token=seal_token(key, query, next_server_token) if next_server_token else None,
    )


async def customer_timeline(
    client: Client,
    database: Database,
    principal: Principal,
    customer_id: str,
    page_token: str | None,
    limit: int,
) -> TimelinePage:
    """Every step the processes of ``customer_id`` recorded, across their runs and
    continued-as-new terms, oldest first, ``limit`` at a time after ``page_token``.

    The processes are the runs with ``CustomerId`` set to the customer that
    ``principal`` may see (the newest ``MAX_TIMELINE_RUNS``); a customer with
    none has an empty timeline. Raises Problem 422 for a ``customer_id`` that is
    no business key, a ``limit`` outside 1 to 500 or a ``page_token`` not
    ours; TemporalUnavailable when Temporal cannot be reached.
    """
    checked("customer_id", customer_id, VALUE_PATTERN, where="path")
    _check_limit(limit, MAX_TIMELINE_PAGE)
    after = id_after(page_token)
    query = scoped([f"{CUSTOMER_ID.name} = {quoted(customer_id)}"], principal)
    processes: dict[str, str | None] = {}
    for run in await list_up_to(client, query, MAX_TIMELINE_RUNS):
        if await visible_to(run, principal):
            processes.setdefault(run.id, run.typed_search_attributes.get(PROCESS))
    if not processes:
        return TimelinePage(customer_id=customer_id, entries=[], next_page_token=None)
    rows = await database.all(
        select(AuditEntry)
        .where(col(AuditEntry.process_id).in_(list(processes)), col(AuditEntry.id) > after)
        .order_by(col(AuditEntry.id))
        .limit(limit + 1)
    )
    page = rows[:limit]
    last = page[-1].id if len(rows) > limit and page else None
    return TimelinePage(
        customer_id=customer_id,
        entries=[
            TimelineEntry(
                process_id=row.process_id,
                process=processes.get(row.process_id),
                step=row.step,
                detail=row.detail,
                recorded_at=as_utc(row.recorded_at),
            )
            for row in page
        ],
        next_page_token=id_token(last) if last is not None else None,
    )


def _check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise invalid_query_value("limit", f"must be from 1 to {most}")


def _summary(run: WorkflowExecution, settings: Settings) -> RunSummary:
    attributes = run.typed_search_attributes
    return RunSummary(
        process_id=run.id,
        run_id=run.run_id,
        process=attributes.get(PROCESS),
        stage=attributes.get(STAGE),
        customer_id=attributes.get(CUSTOMER_ID),
        status=status_name(run.status),
        started_at=run.start_time,
        closed_at=run.close_time,
        web_ui_url=web_ui_url(settings, run.id, run.run_id),
    )
