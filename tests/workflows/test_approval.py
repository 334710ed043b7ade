"""The approval workflow: validated decisions, delegates, escalation, and the CLI signal.

Time-skipping tests run the real worker on a test server of their own; the
CLI test sends ``temporal workflow signal`` to the session's real dev server.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.conftest import DEV_SERVER
from tests.support.renewal import (
    approval_input,
    approver,
    emails_of,
    tasks_of,
)
from tests.support.stack import Stack
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import ApprovalDecision, ApprovalInput, ApprovalResult, approval_id
from workflows.common import APPROVAL_ASSIGNEE

ApprovalHandle = WorkflowHandle[ApprovalWorkflow, ApprovalResult]


async def start(stack: Stack, request: ApprovalInput) -> ApprovalHandle:
    return await stack.client.start_workflow(
        ApprovalWorkflow.run,
        request,
        id=approval_id(request.subject_id),
        task_queue=stack.task_queue,
    )


async def refusal(handle: ApprovalHandle, decision: ApprovalDecision) -> ApplicationError:
    """The validator's error for ``decision``; fails if the update was accepted."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(ApprovalWorkflow.decide, decision)
    assert isinstance(failed.value.cause, ApplicationError)
    return failed.value.cause


async def test_validator_refuses_wrong_approver_unknown_value_and_second_decision(
    stack: Stack,
) -> None:
    handle = await start(stack, approval_input(approver("mgr-hana")))

    wrong = await refusal(handle, ApprovalDecision("fin-olga", "approve"))
    unknown = await refusal(handle, ApprovalDecision("mgr-hana", "maybe"))
    decided = await handle.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "reject", "too generous")
    )
    second = await refusal(handle, ApprovalDecision("mgr-hana", "approve"))
    result = await handle.result()

    assert wrong.type == "NotCurrentApprover"
    assert "'fin-olga' is not the current approver" in wrong.message
    assert unknown.type == "InvalidDecision"
    assert second.type == "AlreadyDecided"
    assert result == decided
    assert (result.outcome, result.decided_by, result.comment) == (
        "rejected",
        "mgr-hana",
        "too generous",
    )
    assert result.on_behalf_of is None
    # Refused updates leave no trace in the history; the run saw one decision.
    state = await handle.query(ApprovalWorkflow.state)
    assert [s.step for s in state.steps if s.step.startswith("decision")] == ["decision:reject"]
    description = await handle.describe()
    assert description.typed_search_attributes.get(APPROVAL_ASSIGNEE) is None


async def test_step_that_times_out_escalates_to_the_next_approver_whose_delegate_decides(
    stack: Stack,
) -> None:
    chain = (approver("mgr-hana", hours=24), approver("fin-olga", hours=48, delegate_id="fin-ravi"))
    handle = await start(stack, approval_input(*chain))
    first = await handle.query(ApprovalWorkflow.state)  # answered once the run has begun
    assert first.details["current_approver"] == "mgr-hana"
    assert (await handle.describe()).typed_search_attributes.get(APPROVAL_ASSIGNEE) == "mgr-hana"

    await stack.env.sleep(timedelta(hours=25))
    state = await handle.query(ApprovalWorkflow.state)
    assignee = (await handle.describe()).typed_search_attributes.get(APPROVAL_ASSIGNEE)
    too_late = await refusal(handle, ApprovalDecision("mgr-hana", "approve"))
    result = await handle.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("fin-ravi", "approve", "Olga is away")
    )

    assert assignee == "fin-olga"
    assert state.details["current_approver"] == "fin-olga"
    assert state.details["escalations"] == ["fin-olga"]
    assert too_late.type == "NotCurrentApprover"
    assert (result.outcome, result.decided_by, result.on_behalf_of) == (
        "approved",
        "fin-ravi",
        "fin-olga",
    )
    assert result.escalations == ["fin-olga"]
    assert (await handle.result()).outcome == "approved"  # the run has closed its tasks
    assert [
        (t.kind, t.assignee_id, t.status) for t in await tasks_of(stack.database, handle.id)
    ] == [
        ("approval_request", "mgr-hana", "done"),  # decided: nobody's queue keeps it
        ("approval_escalation", "fin-olga", "done"),
    ]
    mail = emails_of(stack.maildir, handle.id)
    assert [m.recipients for m in mail] == [["hana.berg@example.com"], ["olga.lind@example.com"]]
    assert "Hana Berg did not decide in time" in mail[1].body
    assert "fin-ravi may decide in your stead" in mail[1].body


async def test_last_step_timing_out_expires_the_request(stack: Stack) -> None:
    handle = await start(stack, approval_input(approver("mgr-hana", hours=2)))

    result = await handle.result()

    assert (result.outcome, result.decided_by, result.escalations) == ("expired", None, [])
    assert result.decided_at - (await handle.describe()).start_time >= timedelta(hours=2)


async def test_an_approval_asked_with_its_deadline_ends_there_or_at_once_when_it_is_past(
    stack: Stack,
) -> None:
    long_past = datetime(2000, 1, 1, tzinfo=UTC)
    late = await start(stack, approval_input(replace(approver("mgr-hana"), decide_by=long_past)))
    missed = await late.result()
    asked = (await late.describe()).start_time
    assert asked is not None
    due = await stack.env.get_current_time() + timedelta(hours=5, minutes=17)  # it may skip
    on_time = replace(approver("mgr-hana", hours=72), decide_by=due)
    handle = await start(stack, approval_input(on_time))
    kept = await handle.result()

    assert missed.outcome == "expired" and missed.decided_at - asked < timedelta(minutes=1)
    assert kept.outcome == "expired"
    assert due <= kept.decided_at < due + timedelta(minutes=1)  # not 72 hours after asking


async def test_decision_signalled_with_the_temporal_cli_completes_the_approval(
    dev_stack: Stack,
) -> None:
    request = approval_input(approver("mgr-hana"))
    decision = {"decided_by": "mgr-hana", "decision": "approve", "comment": "from the CLI"}
    async with dev_stack.worker():
        handle = await start(dev_stack, request)
        ignored = await temporal_cli_signal(
            dev_stack.client, handle.id, {"decided_by": "csm-ben", "decision": "approve"}
        )
        signalled = await temporal_cli_signal(dev_stack.client, handle.id, decision)
        result = await asyncio.wait_for(handle.result(), timeout=10)
        state = await handle.query(ApprovalWorkflow.state)

    assert ignored.returncode == signalled.returncode == 0, signalled.stderr
    assert (result.outcome, result.decided_by, result.comment) == (
        "approved",
        "mgr-hana",
        "from the CLI",
    )
    [refused] = [s for s in state.steps if s.step == "decision_refused"]
    assert "'csm-ben' is not the current approver" in refused.detail


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


async def temporal_cli_signal(
    client: Client, workflow_id: str, decision: dict[str, str]
) -> CliResult:
    """Run ``temporal workflow signal --name decide`` as an approver would."""
    process = await asyncio.create_subprocess_exec(
        str(DEV_SERVER),
        "workflow",
        "signal",
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
        "--workflow-id",
        workflow_id,
        "--name",
        "decide",
        "--input",
        json.dumps(decision),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    return CliResult(process.returncode or 0, stdout.decode(), stderr.decode())
