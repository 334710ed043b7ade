"""People acting on their work through the API: who may complete and hand over which task,
notifications, recalling an approval, and the inbox that shows it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.models import Assignment, AuditEntry, Notification, Task
from tests.api.conftest import KeyedClient
from tests.conftest import eventually
from tests.support.renewal import approval_input, approver
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import approval_id
from workflows.task_types import pool_assignee


def staff_key(staff: str) -> str:
    return "approver" if staff == "mgr-hana" else f"approver:{staff}"


async def a_task(
    database: Database, assignee: str, *, assignment: bool = False, tenant: str | None = None
) -> Task:
    """An open task of a (made-up) process for ``assignee``, maybe the work of an assignment."""
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    process_id = f"lead-l-{stamp}"
    key = f"{process_id}/assign"
    task = Task(
        key=f"{process_id}/call_lead",
        process_id=process_id,
        customer_id=f"l-{stamp}",
        assignee_id=assignee,
        kind="call_lead",
        title="Call the lead",
        due_at=datetime.now(UTC) + timedelta(days=1),
        tenant=tenant,
        assignment_key=key if assignment else None,
    )

    def add(session: Any) -> Task:
        if assignment:
            session.add(
                Assignment(
                    key=key,
                    process_id=process_id,
                    pool="csm-smb",
                    subject_id=task.customer_id,
                    assignee_id=assignee,
                )
            )
        session.add(task)
        session.flush()
        session.refresh(task)
        return task

    stored: Task = await database.run(add)
    return stored


async def test_staff_complete_their_own_and_their_teams_tasks_only(
    as_key: KeyedClient, database: Database
) -> None:
    anas = await a_task(database, "csm-ana")
    bens = await a_task(database, "csm-ben")

    by_ben = await as_key(staff_key("csm-ben")).post(f"/v1/tasks/{anas.id}/complete", json={})
    by_ana = await as_key(staff_key("csm-ana")).post(
        f"/v1/tasks/{anas.id}/complete", json={"note": "done"}
    )
    by_manager = await as_key(staff_key("mgr-hana")).post(f"/v1/tasks/{bens.id}/complete")
    by_finance = await as_key(staff_key("fin-olga")).post(f"/v1/tasks/{bens.id}/complete")

    assert by_ben.status_code == 404
    assert by_ana.status_code == 200 and by_ana.json()["completed_by"] == "csm-ana"
    assert by_manager.status_code == 200 and by_manager.json()["completed_by"] == "mgr-hana"
    assert by_finance.status_code == 404


async def test_a_handed_over_task_takes_its_assignment_and_tells_the_new_assignee(
    as_key: KeyedClient, database: Database
) -> None:
    task = await a_task(database, "csm-ana", assignment=True)
    ana = as_key(staff_key("csm-ana"))

    outsider = await ana.post(f"/v1/tasks/{task.id}/reassign", json={"to": "fin-olga"})
    handed = await ana.post(
        f"/v1/tasks/{task.id}/reassign", json={"to": "csm-ben", "note": "I am away"}
    )
    again = await ana.post(f"/v1/tasks/{task.id}/reassign", json={"to": "csm-cleo"})

    assert outsider.status_code == 409
    assert outsider.json()["errors"][0]["loc"] == ["body", "to"]
    assert handed.status_code == 200 and handed.json()["assignee_id"] == "csm-ben"
    assert again.status_code == 404, "no longer Ana's task"

    def read(session: Any) -> tuple[Assignment, list[Notification]]:
        assignment = session.exec(
            select(Assignment).where(Assignment.key == task.assignment_key)
        ).one()
        notes = session.exec(
            select(Notification).where(Notification.process_id == task.process_id)
        ).all()
        return assignment, list(notes)

    assignment, notes = await database.run(read)
    assert assignment.assignee_id == "csm-ben" and assignment.active, "the load moved"
    assert [(n.staff_id, n.kind) for n in notes] == [("csm-ben", "task_reassigned")]
    assert "I am away" in notes[0].message

    inbox = (await as_key(staff_key("csm-ben")).get("/v1/inbox")).json()
    assert task.id in [t["id"] for t in inbox["tasks"]]
    [note] = [n for n in inbox["notifications"] if n["process_id"] == task.process_id]
    assert note["read"] is False
    other = await as_key(staff_key("csm-ana")).post(f"/v1/notifications/{note['id']}/read")
    read_it = await as_key(staff_key("csm-ben")).post(f"/v1/notifications/{note['id']}/read")
    assert other.status_code == 404
    assert read_it.status_code == 200 and read_it.json()["read"] is True


async def test_a_done_task_cannot_be_handed_over(as_key: KeyedClient, database: Database) -> None:
    task = await a_task(database, "csm-ana")
    support = as_key("support")
    await support.post(f"/v1/tasks/{task.id}/complete")

    answer = await support.post(f"/v1/tasks/{task.id}/reassign", json={"to": "csm-ben"})

    assert answer.status_code == 409


async def test_a_manager_sees_the_team_and_a_tenant_only_its_own(
    as_key: KeyedClient, database: Database
) -> None:
    bens = await a_task(database, "csm-ben")

    inbox = (await as_key(staff_key("mgr-hana")).get("/v1/inbox")).json()
    own = (await as_key(staff_key("csm-ben")).get("/v1/inbox")).json()

    assert bens.id in [t["id"] for t in inbox["team_tasks"]]
    assert bens.id not in [t["id"] for t in inbox["tasks"]]
    assert bens.id in [t["id"] for t in own["tasks"]]
    assert all(t["colleagues"] for t in own["tasks"])


async def test_only_the_requester_recalls_an_approval(
    as_key: KeyedClient, dev_client: Client, api_settings: Settings
) -> None:
    request = approval_input(approver("mgr-hana"))  # requested by csm-ana
    handle = await dev_client.start_workflow(
        ApprovalWorkflow.run,
        request,
        id=approval_id(request.subject_id),
        task_queue=api_settings.task_queue,
    )
    ana = as_key(staff_key("csm-ana"))
    await eventually(
        lambda: ana.get("/v1/inbox"),
        lambda answer: handle.id in [a["approval_id"] for a in answer.json()["requested"]],
    )

    stranger = await as_key(staff_key("csm-ben")).post(f"/v1/approvals/{handle.id}/recall")
    recalled = await ana.post(f"/v1/approvals/{handle.id}/recall", json={"reason": "lost deal"})

    assert stranger.status_code == 403
    assert recalled.status_code == 202
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    audit = (await as_key("caller").get(f"/v1/processes/{handle.id}/audit")).json()["steps"]
    [outcome] = [step for step in audit if step["step"] == "outcome"]
    assert outcome["detail"]["outcome"] == "withdrawn"
    assert "recalled by csm-ana: lost deal" in outcome["detail"]["reason"]
    again = await ana.post(f"/v1/approvals/{handle.id}/recall")
    assert again.status_code == 409


async def test_the_inbox_is_a_staff_members(as_key: KeyedClient, api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/inbox")  # service + support, no staff id

    assert answer.status_code == 403


async def test_a_pool_task_goes_to_the_member_who_claims_it_first(
    as_key: KeyedClient, database: Database
) -> None:
    task = await a_task(database, pool_assignee("csm-smb"))
    ben, ana, dev = (as_key(staff_key(s)) for s in ("csm-ben", "csm-ana", "csm-dev"))
    waiting = (await ben.get("/v1/inbox")).json()

    outsider = await dev.post(f"/v1/tasks/{task.id}/claim")  # csm-enterprise only
    claimed = await ben.post(f"/v1/tasks/{task.id}/claim")
    late = await ana.post(f"/v1/tasks/{task.id}/claim")
    done = await ben.post(f"/v1/tasks/{task.id}/complete", json={"note": "called"})

    assert task.id in [t["id"] for t in waiting["pool_tasks"]]
    assert outsider.status_code == 404
    assert claimed.status_code == 200 and claimed.json()["assignee_id"] == "csm-ben"
    assert late.status_code == 409 and "csm-ben claimed it first" in late.json()["detail"]
    assert done.status_code == 200

    def steps(session: Any) -> list[str]:
        rows = session.exec(select(AuditEntry).where(AuditEntry.process_id == task.process_id))
        return [row.step for row in rows]

    assert await database.run(steps) == ["task_claimed:call_lead", "task_done:call_lead"]


async def test_a_staff_member_completes_as_themselves(
    as_key: KeyedClient, database: Database
) -> None:
    task = await a_task(database, "csm-ana")

    named = await as_key(staff_key("csm-ana")).post(
        f"/v1/tasks/{task.id}/complete", json={"completed_by": "csm-ben"}
    )

    assert named.status_code == 403
    assert "completes as themselves" in named.json()["detail"]
