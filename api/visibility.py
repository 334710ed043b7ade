"""Reading runs from Temporal's visibility store: queries built from checked values,
scoped to the caller's tenant, read a page at a time.

Every value put in a query matches a pattern that admits no quote, backslash
or space, and is quoted and escaped besides, so no caller's value can leave
its string literal. A principal of a tenant queries ``CrmTenant = '<tenant>'``,
and a run whose memo names another tenant is dropped even so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from api.problems import Problem
from crm.platform.principals import Principal
from crm.platform.settings import Settings
from crm.platform.temporal import TemporalUnavailable
from workflows.common import PROCESS, TENANT

#: Customer and record ids, stages: what business keys and step ids are made of.
VALUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
#: A process's name (``onboarding``, ``sla``, ``automation``, ...).
PROCESS_PATTERN = r"^[a-z][a-z0-9_-]{0,49}$"
#: The ``status`` filter's values and the ``ExecutionStatus`` each stands for.
STATUSES: dict[str, str] = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
    "continued_as_new": "ContinuedAsNew",
}
#: Only crmflow's processes: not the webhook deliveries' or anyone else's workflows.
CRM_RUNS = f"{PROCESS.name} IS NOT NULL"


def invalid_query_value(field: str, message: str, where: str = "query") -> Problem:
    """The 422 for one invalid query (or path) parameter, shaped like FastAPI's own."""
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        f"{field}: {message}",
        errors=[{"loc": [where, field], "msg": message, "type": "value_error"}],
    )


def checked(field: str, value: str, pattern: str, where: str = "query") -> str:
    """``value`` if it matches ``pattern``; raises Problem 422 on ``field`` otherwise."""
    if not re.fullmatch(pattern, value):
        raise invalid_query_value(field, f"must match {pattern}", where)
    return value


def quoted(value: str) -> str:
    """``value`` as a visibility query's string literal, quote and backslash escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp(moment: datetime) -> str:
    """``moment`` as the RFC 3339 UTC literal the visibility store compares (naive means
    UTC); a moment beyond the range of UTC times is the nearest one that is not."""
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    except OverflowError:
        utc = datetime.min if moment.year == datetime.min.year else datetime.max
    return quoted(utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z")


def scoped(conditions: Sequence[str], principal: Principal) -> str:
    """The query of crmflow runs meeting every condition, within ``principal``'s tenant."""
    clauses = [CRM_RUNS, *conditions]
    if principal.tenant is not None:
        clauses.append(f"{TENANT.name} = {quoted(principal.tenant)}")
    return " AND ".join(clauses)


async def visible_to(execution: WorkflowExecution, principal: Principal) -> bool:
    """Whether ``principal`` may see ``execution``: always without a tenant; with one,
    only when the run's memo names that tenant."""
    if principal.tenant is None:
        return True
    tenant: Any = await execution.memo_value("tenant", None)
    return bool(tenant == principal.tenant)


async def list_page(
    client: Client, query: str, page_size: int, server_token: bytes | None
) -> tuple[list[WorkflowExecution], bytes | None]:
    """One page of the runs ``query`` finds, in Temporal's order, and the server's token
    for the next; raises TemporalUnavailable when Temporal cannot be reached."""
    listing = client.list_workflows(query, page_size=page_size, next_page_token=server_token)
    try:
        await listing.fetch_next_page()
    except RPCError as err:
        raise TemporalUnavailable(err.message) from err
    return list(listing.current_page or []), listing.next_page_token


async def list_up_to(client: Client, query: str, limit: int) -> list[WorkflowExecution]:
    """At most ``limit`` runs ``query`` finds; raises TemporalUnavailable."""
    try:
        return [run async for run in client.list_workflows(query, limit=limit)]
    except RPCError as err:
        raise TemporalUnavailable(err.message) from err


def web_ui_url(settings: Settings, process_id: str, run_id: str | None = None) -> str:
    """The page of a run (the latest of ``process_id`` without ``run_id``) in the
    Temporal Web UI."""
    base = settings.temporal_ui_url.rstrip("/")
    url = f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/"
    url += quote(process_id, safe="")
    return f"{url}/{quote(run_id, safe='')}" if run_id else url
