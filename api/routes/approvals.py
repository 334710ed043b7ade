"""``/v1/approvals``: the caller's pending approvals, and deciding one.

The caller is an approver principal, who acts as the staff member its key or
token names (``staff_id``). An approver sees the approvals whose current step
is theirs or delegated to them, and decides them through the approval's
``decide`` update, whose validator refuses anyone but the current approver or
their delegate (403), a second decision (409) and an unknown value (422).
Support staff see every pending approval but decide none.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Approver, ApproverOrSupport
from api.deps import PolicyDep, TemporalDep
from api.problems import Problem
from api.runs import StateUnanswered, describe_process, query_state, status_name
from crm.platform.principals import Principal
from workflows.approval_types import ApprovalDecision, ApprovalResult
from workflows.common import APPROVAL_ASSIGNEE, PROCESS

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])

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


class DecisionCreate(BaseModel):
    """Approve or reject, with a comment kept in the result and the audit trail."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)


class ApprovalDecided(BaseModel):
    """The result of the approval: who decided what, when, and with which comment."""

    approval_id: str
    outcome: str
    decided_by: str | None
    on_behalf_of: str | None
    decided_at: datetime
    comment: str


def _staff_id(principal: Principal) -> str:
    if principal.staff_id is None or not _STAFF_ID.match(principal.staff_id):
        raise Problem(
            403, "forbidden", "Not allowed", f"{principal.id} is not linked to a staff member"
        )
    return principal.staff_id


@router.get("", response_model=list[ApprovalView])
async def list_approvals(
    client: TemporalDep, policy: PolicyDep, principal: ApproverOrSupport
) -> list[ApprovalView]:
    """Pending approvals: for an approver, those waiting for them or for someone they
    are the delegate of; for support staff, all of them."""
    query = f"{PROCESS.name} = 'approval' AND ExecutionStatus = 'Running'"
    caller: str | None = None
    if not principal.has_any("support") or principal.staff_id is not None:
        caller = _staff_id(principal)
        on_behalf_of = [m.id for m in policy.staff if m.delegate_id == caller]
        assignees = ", ".join(f"'{staff}'" for staff in [caller, *on_behalf_of])
        query += f" AND {APPROVAL_ASSIGNEE.name} IN ({assignees})"
    try:
        ids = [execution.id async for execution in client.list_workflows(query, limit=200)]
    except RPCError as err:
        raise Problem(503, "temporal-unavailable", "Temporal is unavailable", err.message) from err
    views = [v for v in await asyncio.gather(*(_view(client, i) for i in ids)) if v is not None]
    if caller is None:
        return views
    return [view for view in views if caller in (view.current_approver, view.delegate)]


@router.post("/{approval_id}/decision", response_model=ApprovalDecided)
async def decide(
    approval_id: str,
    body: DecisionCreate,
    client: TemporalDep,
    principal: Approver,
) -> ApprovalDecided:
    """Approve or reject: 200 with the result; 403 not the current approver or delegate,
    409 already decided or expired, 404 no such approval."""
    caller = _staff_id(principal)
    description = await describe_process(client, approval_id)
    if description.typed_search_attributes.get(PROCESS) != "approval":
        raise Problem(
            404, "approval-not-found", "Approval not found", f"no approval {approval_id!r}"
        )
    handle = client.get_workflow_handle(approval_id, run_id=description.run_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise Problem(
            409,
            "approval-decided",
            "Approval already decided",
            f"approval {approval_id!r} is {status_name(description.status)}",
        )
    try:
        result = await handle.execute_update(
            "decide",
            ApprovalDecision(decided_by=caller, decision=body.decision, comment=body.comment),
            result_type=ApprovalResult,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        status, problem, title = _REFUSALS.get(kind or "", (409, "approval-refused", "Refused"))
        raise Problem(status, problem, title, str(cause)) from err
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
