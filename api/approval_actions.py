"""Approvals as people act on them: the pending ones a person may decide, deciding one, and
a requester recalling one.

An approver acts as the staff member its key or token names (``staff_id``)
and sees the approvals whose current step is theirs or delegated to them; a
decision goes through the approval's ``decide`` update, whose validator
refuses anyone but the current approver or their delegate (403), a second
decision (409) and an unknown value (422). Support staff see every pending
approval but decide none. The API routes and the console both call these.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from api.runs import StateUnanswered, describe_process, query_state, status_name
from api.visibility import visible_to
from crm.platform.principals import Principal
from crm.policy import Policy
from workflows.approval_types import ApprovalDecision, ApprovalResult
from workflows.common import APPROVAL_ASSIGNEE, PROCESS

#: The most pending approvals one look lists.
MAX_PENDING = 200

_STAFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_REFUSALS = {
    "NotCurrentApprover": (403, "not-current-approver", "Not the current approver"),
    "AlreadyDecided": (409, "approval-decided", "Approval already decided"),
    "InvalidDecision": (422, "validation-error", "Invalid decision"),
}


class ApprovalView(BaseModel):
    """A pending approval as its approver sees it."""

    approval_id: str
    subject: str
    requester_id: str
    customer_id: str
    current_approver: str | None
    delegate: str | None
    decide_by: datetime | None
    details: dict[str, Any]


class ApprovalDecided(BaseModel):
    """The result of the approval: who decided what, when, and with which comment."""

    approval_id: str
    outcome: str
    decided_by: str | None
    on_behalf_of: str | None
    decided_at: datetime
    comment: str


def staff_id_of(principal: Principal) -> str:
    """The staff member ``principal`` acts as; Problem 403 when it names none."""
    if principal.staff_id is None or not _STAFF_ID.match(principal.staff_id):
        raise Problem(
            403, "forbidden", "Not allowed", f"{principal.id} is not linked to a staff member"
        )
    return principal.staff_id


async def pending_approvals(
    client: Client, policy: Policy, principal: Principal
) -> list[ApprovalView]:
    """Pending approvals: for a staff member, those waiting for them or for someone they
    are the delegate of; for support staff of no staff id, all of them. Raises Problem 503
    when Temporal cannot be reached."""
    query = f"{PROCESS.name} = 'approval' AND ExecutionStatus = 'Running'"
    caller: str | None = None
    if not principal.has_any("support") or principal.staff_id is not None:
        caller = staff_id_of(principal)
        on_behalf_of = [m.id for m in policy.staff if m.delegate_id == caller]
        assignees = ", ".join(f"'{staff}'" for staff in [caller, *on_behalf_of])
        query += f" AND {APPROVAL_ASSIGNEE.name} IN ({assignees})"
    views = await _running_approvals(client, query, principal)
    if caller is None:
        return views
    return [view for view in views if caller in (view.current_approver, view.delegate)]


async def requested_approvals(client: Client, principal: Principal) -> list[ApprovalView]:
    """The pending approvals ``principal``'s staff member requested (which they may recall).
    Raises Problem 403 for a principal of no staff id, 503 when Temporal is away."""
    caller = staff_id_of(principal)
    query = f"{PROCESS.name} = 'approval' AND ExecutionStatus = 'Running'"
    views = await _running_approvals(client, query, principal)
    return [view for view in views if view.requester_id == caller]


async def decide_approval(
    client: Client,
    principal: Principal,
    approval_id: str,
    decision: Literal["approve", "reject"],
    comment: str,
) -> ApprovalDecided:
    """Approve or reject as ``principal``'s staff member: the result. Raises Problem 403 not
    the current approver or delegate, 409 already decided or expired, 404 no such approval,
    503 Temporal away."""
    caller = staff_id_of(principal)
    handle = await _pending(client, approval_id, principal)
    try:
        result = await handle.execute_update(
            "decide",
            ApprovalDecision(decided_by=caller, decision=decision, comment=comment),
            result_type=ApprovalResult,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        status, problem, title = _REFUSALS.get(kind or "", (409, "approval-refused", "Refused"))
        why = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise Problem(status, problem, title, why) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # it ended between describe and update
            raise Problem(409, "approval-decided", "Approval already decided", err.message) from err
        raise Problem(503, "temporal-unavailable", "Temporal is unavailable", err.message) from err
    return ApprovalDecided(
        approval_id=result.approval_id,
        outcome=result.outcome,
        decided_by=result.decided_by,
        on_behalf_of=result.on_behalf_of,
        decided_at=result.decided_at,
        comment=result.comment,
    )


async def recall_approval(
    client: Client, principal: Principal, approval_id: str, reason: str
) -> None:
    """Withdraw a pending approval its requester no longer needs: the approval ends as
    ``withdrawn`` with ``reason``. Raises Problem 403 when ``principal``'s staff member did
    not request it, 409 when it is no longer pending, 404 no such approval."""
    caller = staff_id_of(principal)
    handle = await _pending(client, approval_id, principal)
    view = await _view(client, approval_id)
    if view is None or view.requester_id != caller:
        raise Problem(
            403,
            "not-requester",
            "Not the requester",
            f"only the requester may recall approval {approval_id!r}",
        )
    await handle.cancel(reason=f"recalled by {caller}" + (f": {reason}" if reason else ""))


async def _pending(
    client: Client, approval_id: str, principal: Principal | None = None
) -> WorkflowHandle[Any, Any]:
    """The running approval ``approval_id`` (of ``principal``'s tenant, when given). Raises
    Problem 404 when there is none, 409 when it is no longer pending."""
    description = await describe_process(client, approval_id, principal)
    if description.typed_search_attributes.get(PROCESS) != "approval":
        raise Problem(
            404, "approval-not-found", "Approval not found", f"no approval {approval_id!r}"
        )
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise Problem(
            409,
            "approval-decided",
            "Approval already decided",
            f"approval {approval_id!r} is {status_name(description.status)}",
        )
    return client.get_workflow_handle(approval_id, run_id=description.run_id)


async def _running_approvals(
    client: Client, query: str, principal: Principal
) -> list[ApprovalView]:
    """The running approvals ``query`` finds that ``principal``'s tenant may see (by the
    run's memo: approvals started by a renewal or an automation carry no ``CrmTenant``), at
    most ``MAX_PENDING``."""
    try:
        found = [e async for e in client.list_workflows(query, limit=MAX_PENDING)]
    except RPCError as err:
        raise Problem(503, "temporal-unavailable", "Temporal is unavailable", err.message) from err
    ids = [execution.id for execution in found if await visible_to(execution, principal)]
    return [v for v in await asyncio.gather(*(_view(client, i) for i in ids)) if v is not None]


async def _view(client: Client, approval_id: str) -> ApprovalView | None:
    try:
        state = await query_state(client, approval_id)
    except StateUnanswered:
        return None
    details = state.details
    decide_by = details.get("decide_by")
    return ApprovalView(
        approval_id=approval_id,
        subject=str(details.get("subject", "")),
        requester_id=str(details.get("requester_id", "")),
        customer_id=state.customer_id,
        current_approver=details.get("current_approver"),
        delegate=details.get("delegate"),
        decide_by=datetime.fromisoformat(decide_by) if decide_by else None,
        details=dict(details.get("details") or {}),
    )
