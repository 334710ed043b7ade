"""``/v1/approvals``: the caller's pending approvals, deciding one, recalling one.

What they mean is ``api.approval_actions``'s (the console acts through it too).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.approval_actions import (
    ApprovalDecided,
    ApprovalView,
    decide_approval,
    pending_approvals,
    recall_approval,
)
from api.auth import Approver, ApproverOrSupport, Authenticated
from api.deps import PolicyDep, TemporalDep

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class DecisionCreate(BaseModel):
    """Approve or reject, with a comment kept in the result and the audit trail."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)


class RecallRequest(BaseModel):
    """Why the requester no longer needs the decision (kept with the withdrawal)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


class RecallAccepted(BaseModel):
    """The approval is being withdrawn; it ends as ``withdrawn``."""

    approval_id: str
    status: str = "recall_requested"


@router.get("", response_model=list[ApprovalView])
async def list_approvals(
    client: TemporalDep, policy: PolicyDep, principal: ApproverOrSupport
) -> list[ApprovalView]:
    """Pending approvals: for an approver, those waiting for them or for someone they
    are the delegate of; for support staff, all of them."""
    return await pending_approvals(client, policy, principal)


@router.post("/{approval_id}/decision", response_model=ApprovalDecided)
async def decide(
    approval_id: str, body: DecisionCreate, client: TemporalDep, principal: Approver
) -> ApprovalDecided:
    """Approve or reject: 200 with the result; 403 not the current approver or delegate,
    409 already decided or expired, 404 no such approval."""
    return await decide_approval(client, principal, approval_id, body.decision, body.comment)


@router.post(
    "/{approval_id}/recall", response_model=RecallAccepted, status_code=status.HTTP_202_ACCEPTED
)
async def recall(
    approval_id: str,
    client: TemporalDep,
    principal: Authenticated,
    body: RecallRequest | None = None,
) -> RecallAccepted:
    """The requester withdraws a pending approval: 202; 403 for anyone but its requester's
    staff member, 409 when it is no longer pending, 404 no such approval."""
    await recall_approval(client, principal, approval_id, (body or RecallRequest()).reason)
    return RecallAccepted(approval_id=approval_id)
