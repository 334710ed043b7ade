"""Onboarding's own workflow with its five first-phase activities as stubs.

The stubs return what the real activities would and do no I/O, so a run of
this worker measures what crmflow's orchestration costs over the raw
baseline (search attributes, summaries, state, larger payloads) apart from
the work of the activities (database, SMTP, HTTP). Each welcome "email"
appends a line to ``done_file`` so the benchmark can count finished first
phases. Run it with ``python -m bench.stub_activities <address> <task queue>
<done file>``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from crm.platform.settings import get_settings
from worker.runners import workflow_runner
from workflows.contracts import (
    ASSIGN_OWNER,
    CREATE_TASK,
    ENRICH_COMPANY,
    SEND_EMAIL,
    UPSERT_CUSTOMER,
    Assignment,
    AssignmentRequest,
    CompanyProfile,
    CustomerRecord,
    EmailReceipt,
    EmailRequest,
    EnrichmentRequest,
    TaskRef,
    TaskRequest,
)
from workflows.onboarding import OnboardingWorkflow


class StubActivities:
    """The first phase's activities, answering at once; the welcome email is counted."""

    def __init__(self, done: TextIO) -> None:
        self._done = done

    @activity.defn(name=ENRICH_COMPANY)
    async def enrich_company(self, request: EnrichmentRequest) -> CompanyProfile:
        return CompanyProfile(
            domain=request.domain,
            name="Bench Co",
            industry="Software",
            employees=42,
            size_band="11-50",
            country="SE",
        )

    @activity.defn(name=ASSIGN_OWNER)
    async def assign_owner(self, request: AssignmentRequest) -> Assignment:
        return Assignment(
            key=request.key,
            pool=request.pool,
            assignee_id="csm-ana",
            assignee_name="Ana Andersson",
            assignee_email="ana@crmflow.localhost",
            manager_id=None,
            open_load=1,
        )

    @activity.defn(name=UPSERT_CUSTOMER)
    async def upsert_customer(self, _record: CustomerRecord) -> None:
        return None

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskRequest) -> TaskRef:
        return TaskRef(task_id=1, key=request.key, created=True)

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailRequest) -> EmailReceipt:
        self._done.write(f"{request.process_id}\n")
        return EmailReceipt(request.key, "<bench@crmflow.localhost>", "Welcome", sent=True)


async def run_worker(address: str, task_queue: str, done: TextIO) -> None:
    client = await Client.connect(address)
    stubs = StubActivities(done)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[OnboardingWorkflow],
        activities=[
            stubs.enrich_company,
            stubs.assign_owner,
            stubs.upsert_customer,
            stubs.create_task,
            stubs.send_email,
        ],
        workflow_runner=workflow_runner(get_settings()),  # as the product worker
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    with open(sys.argv[3], "a", buffering=1) as done_file:  # line-buffered: counted as written
        asyncio.run(run_worker(sys.argv[1], sys.argv[2], done_file))
