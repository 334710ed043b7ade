"""Approvals: a child of the processes that need a decision (a renewal's discount).

Decisions arrive as the ``decide`` Update (``POST /v1/approvals/{id}/decision``)
or signal, not as business events.
"""

from __future__ import annotations

from processes.registry import ProcessDescriptor, no_events
from workflows.approval import ApprovalWorkflow
from workflows.common import APPROVAL_ASSIGNEE, CUSTOMER_ID, PROCESS, STAGE

APPROVAL = ProcessDescriptor(
    name="approval",
    workflow=ApprovalWorkflow,
    title="Approval",
    events=no_events,
    search_attributes=(PROCESS, CUSTOMER_ID, STAGE, APPROVAL_ASSIGNEE),
)
