"""Customer onboarding: from sign-up to an activated account, or a stalled one.

The process a customer-success team runs for every new customer:

1. Enrich the company from the contact's email domain; go on with partial
   data when the provider knows nothing or is down.
2. Assign a customer-success manager (CSM) from the plan's pool, least loaded
   first.
3. Create the kickoff task for the CSM, due in 2 business days.
4. Send the welcome email.
5. Wait for the activation milestones (``account_configured``,
   ``first_value``), sent as events:
   - day 3 and day 7: nudge the customer about the milestones still missing;
   - day 10: create an "at risk" task for the CSM;
   - day 30: stop waiting, the onboarding has stalled.
   Reaching every milestone at any point ends it as activated.

Cancelling the run (the customer churned) ends it as cancelled. The days are
policy (``crm.domain.schedules.OnboardingSchedule``) and count from the start of the run.
"""

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.activity_steps import ActivitySteps
from workflows.publishing_steps import REPORT_MILESTONES
from workflows.retries import RECORD_RETRY

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import BusinessCalendar
    from workflows.common import ProcessEvent, ProcessState
    from workflows.contracts import (
        UPSERT_CUSTOMER,
        Assignment,
        CompanyProfile,
        CustomerRecord,
        EmailRequest,
        TaskRef,
    )
    from workflows.onboarding_types import OnboardingInput, OnboardingResult

#: The input's types are re-exported: processes/onboarding.py and the worker-crash test
#: import them from here.
PROCESS_NAME = "onboarding"

#: From this patch on, the first phase's passing steps (enriching, assigning,
#: welcoming) show in ``state`` only; ``CrmStage`` stays ``starting`` until the
#: run waits for its milestones. Runs begun before it published each step.
QUIET_FIRST_PHASE = "quiet-first-phase"


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class OnboardingWorkflow(ActivitySteps):
    """One customer's onboarding; see the module docstring for the schedule."""

    @workflow.init
    def __init__(self, customer: OnboardingInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=customer.customer_id)
        self._customer = customer
        self._schedule = customer.schedule
        self._reached: dict[str, datetime] = {}
        self._company = CompanyProfile(domain=_domain_of(customer.contact_email), complete=False)
        self._csm: Assignment | None = None
        self._nudges_sent: list[int] = []
        self._at_risk_task_id: int | None = None

    @workflow.run
    async def run(self, customer: OnboardingInput) -> OnboardingResult:
        if problems := customer.problems():
            raise ApplicationError(
                "invalid onboarding input: " + "; ".join(problems),
                type="InvalidInput",
                non_retryable=True,
            )
        self._started = workflow.now()
        self._publish_process(customer.customer_id, "starting")
        try:
            await self._enrich_company()
            await self._assign_csm()
            await self._create_kickoff_task()
            await self._send_welcome_email()
            outcome = await self._wait_for_activation()
        except (asyncio.CancelledError, ActivityError) as err:
            # A cancel that lands while an activity runs arrives as its ActivityError.
            if not is_cancelled_exception(err):
                raise
            await self._close_as_churned()
            raise
        await self._finish(outcome)
        return OnboardingResult(
            customer_id=customer.customer_id,
            outcome=outcome,
            csm_id=self._csm_or_fail().assignee_id,
            milestones=dict(self._reached),
            nudges_sent=list(self._nudges_sent),
            at_risk_task_id=self._at_risk_task_id,
            enrichment_complete=self._company.complete,
        )

    @workflow.signal
    async def event(self, event: ProcessEvent) -> None:
        """Record a milestone the customer reached; other event types are noted and ignored."""
        if event.type not in self._schedule.milestones:
            workflow.logger.warning("onboarding ignores event type %r", event.type)
            self._show_step(f"ignored:{event.type}", "not an onboarding milestone")
            return
        if event.type in self._reached:
            return
        self._reached[event.type] = workflow.now()
        self._show_step(f"milestone:{event.type}")
        await self._audit_step(f"milestone:{event.type}", {"data": event.data})
        since_start = self._reached[event.type] - workflow.info().start_time
        await self._emit_report_milestone(
            "onboarding.milestone_reached",
            {"milestone": event.type, "seconds_since_start": since_start.total_seconds()},
            step=f"milestone_{event.type}",
        )

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the run waits for, its due times and the steps taken so far."""
        self._state.waiting_for = [m for m in self._schedule.milestones if m not in self._reached]
        self._state.details = {
            "plan": self._customer.plan,
            "csm_id": self._csm.assignee_id if self._csm else None,
            "milestones": {name: at.isoformat() for name, at in self._reached.items()},
            "nudges_sent": list(self._nudges_sent),
            "enrichment_complete": self._company.complete,
        }
        return self._state

    # The steps of the process, in order.

    async def _enrich_company(self) -> None:
        self._set_step_stage("enriching")
        company = await self._look_up_company(self._company.domain)
        if company is None:
            self._company = CompanyProfile(
                domain=self._company.domain, name=self._customer.company_name, complete=False
            )
        else:
            self._company = company
            self._show_step("enrich", f"{company.industry}, {company.country}")

    async def _assign_csm(self) -> None:
        self._set_step_stage("assigning")
        self._csm = await self._assign_owner(
            self._key("assign_csm"),
            self._customer.csm_pool,
            self._customer.customer_id,
            summary=f"assign CSM from {self._customer.csm_pool}",
        )
        self._show_step("assign_csm", self._csm.assignee_id)
        await self._save_customer("onboarding")
        await self._emit_report_milestone("onboarding.started", {}, step="started")

    async def _create_kickoff_task(self) -> None:
        calendar = BusinessCalendar.from_spec(self._schedule.calendar)
        due = calendar.add_business_days(workflow.now(), self._schedule.kickoff_business_days)
        self._state.due["kickoff"] = due
        await self._create_task(
            "kickoff",
            f"Kickoff call with {self._customer.company_name}",
            due,
            detail=f"Plan {self._customer.plan}; contact {self._customer.contact_name}.",
        )

    async def _send_welcome_email(self) -> None:
        self._set_step_stage("welcoming")
        await self._send_email("welcome", {"milestones": list(self._schedule.milestones)})

    async def _wait_for_activation(self) -> str:
        self._set_stage("awaiting_milestones")
        for day in self._schedule.nudge_days:  # day 3 and day 7 by default
            if await self._activated_by(day, f"nudge_day_{day}"):
                return "activated"
            await self._send_nudge(day)
        if await self._activated_by(self._schedule.at_risk_day, "at_risk"):  # day 10
            return "activated"
        await self._flag_at_risk()
        if await self._activated_by(self._schedule.stall_day, "stall"):  # day 30
            return "activated"
        return "stalled"

    async def _send_nudge(self, day: int) -> None:
        missing = [m for m in self._schedule.milestones if m not in self._reached]
        await self._send_email(
            f"nudge_day_{day}", {"day": day, "missing": missing}, "onboarding_nudge"
        )
        self._nudges_sent.append(day)

    async def _flag_at_risk(self) -> None:
        self._set_stage("at_risk")
        missing = ", ".join(m for m in self._schedule.milestones if m not in self._reached)
        task = await self._create_task(
            "at_risk",
            f"At risk: {self._customer.company_name} not activated after "
            f"{self._schedule.at_risk_day} days",
            workflow.now() + timedelta(days=1),
            detail=f"Missing milestones: {missing}.",
        )
        self._at_risk_task_id = task.task_id

    async def _finish(self, outcome: str) -> None:
        self._set_stage(outcome)
        self._state.outcome = outcome
        await self._audit_step("outcome", {"outcome": outcome, "milestones": sorted(self._reached)})
        await self._save_customer(outcome)
        await self._release_csm()
        await self._offer_outcome(outcome, self._customer.customer_id, self._outcome_record())
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_churned(self) -> None:
        reason = workflow.cancellation_reason() or "cancelled"
        self._set_stage("cancelled")
        self._state.outcome = "cancelled"
        await self._audit_step("outcome", {"outcome": "cancelled", "reason": reason})
        await self._save_customer("churned")
        await self._release_csm()
        await self._offer_outcome("cancelled", self._customer.customer_id, self._outcome_record())

    def _outcome_record(self) -> dict[str, object]:
        """The onboarding as automations on ``crmflow.onboarding`` see it."""
        customer = self._customer
        return {
            "company_name": customer.company_name,
            "contact_name": customer.contact_name,
            "contact_email": customer.contact_email,
            "plan": customer.plan,
            "csm_id": self._csm.assignee_id if self._csm is not None else "",
            "milestones": sorted(self._reached),
            "nudges_sent": len(self._nudges_sent),
        }

    # Helpers: each a single activity call or a change of the visible state.

    async def _emit_report_milestone(self, kind: str, data: dict[str, object], step: str) -> None:
        """Emit ``kind`` with the plan and CSM the reports group it by (REPORT_MILESTONES)."""
        csm_id = self._csm.assignee_id if self._csm is not None else ""
        data = {"plan": self._customer.plan, "csm_id": csm_id, **data}
        await self._emit(kind, data, step=step, since=REPORT_MILESTONES)

    def _set_step_stage(self, stage: str) -> None:
        """A first-phase step: searchable only in runs begun before QUIET_FIRST_PHASE."""
        self._set_stage(stage, searchable=not workflow.patched(QUIET_FIRST_PHASE))

    async def _activated_by(self, day: int, deadline_name: str) -> bool:
        """Wait until every milestone is reached or ``day`` has come; True if activated."""
        deadline = self._started + timedelta(days=day)
        self._state.due[deadline_name] = deadline
        remaining = max(deadline - workflow.now(), timedelta(0))
        workflow.set_current_details(
            f"Waiting for milestones {self.state().waiting_for} until day {day} "
            f"({deadline:%Y-%m-%d %H:%M} UTC)."
        )
        try:
            await workflow.wait_condition(
                self._all_milestones_reached, timeout=remaining, timeout_summary=f"day {day}"
            )
        except TimeoutError:
            return self._all_milestones_reached()
        return True

    def _all_milestones_reached(self) -> bool:
        return all(m in self._reached for m in self._schedule.milestones)

    async def _create_task(self, kind: str, title: str, due: datetime, detail: str) -> TaskRef:
        request = self._task_request(
            kind,
            customer_id=self._customer.customer_id,
            assignee_id=self._csm_or_fail().assignee_id,
            kind=kind,
            title=title,
            due=due,
            detail=detail,
        )
        return await self._task(kind, request)

    async def _send_email(
        self, step: str, context: dict[str, object], template: str | None = None
    ) -> None:
        csm = self._csm_or_fail()
        await self._email(
            step,
            EmailRequest(
                key=self._key(f"email_{step}"),
                process_id=self._process_id,
                to=self._customer.contact_email,
                template=template or step,
                context={
                    "company_name": self._customer.company_name,
                    "contact_name": self._customer.contact_name,
                    "plan": self._customer.plan,
                    "csm_name": csm.assignee_name,
                    "csm_email": csm.assignee_email,
                    **context,
                },
            ),
            within=timedelta(days=1),
        )

    async def _save_customer(self, stage: str) -> None:
        company = self._company
        await workflow.execute_activity(
            UPSERT_CUSTOMER,
            CustomerRecord(
                customer_id=self._customer.customer_id,
                company_name=company.name or self._customer.company_name,
                contact_name=self._customer.contact_name,
                contact_email=self._customer.contact_email,
                plan=self._customer.plan,
                stage=stage,
                domain=company.domain,
                industry=company.industry,
                employees=company.employees,
                country=company.country,
                csm_id=self._csm.assignee_id if self._csm else None,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"customer record: {stage}",
        )

    async def _release_csm(self) -> None:
        if self._csm is not None:
            await self._release_assignment(self._csm.key, "release CSM assignment")

    def _csm_or_fail(self) -> Assignment:
        if self._csm is None:
            raise ApplicationError("no CSM assigned yet", type="InvalidState", non_retryable=True)
        return self._csm


def _domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()
