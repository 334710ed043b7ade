"""Acting on the levels of a ticket's SLA clocks (``SlaLevelSteps``, a part of
``TicketSlaWorkflow``): whom a level tells, the email, notice or task and milestone it
sends, the pool it moves the ticket to, and the assignment those steps need."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import sla_messages as messages
from workflows.activity_steps import ActivitySteps
from workflows.retries import RECORD_RETRY

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import BusinessCalendar
    from crm.domain.policy_clocks import PolicyClocks
    from crm.domain.sla_policies import BREACHED, REASSIGN, SKIPPED, LevelAction
    from crm.domain.ticket_clocks import TicketClocks
    from workflows.contracts import (
        RECORD_LEVEL,
        Assignment,
        LevelRecorded,
        LevelRecords,
        StaffContact,
        TaskRequest,
    )
    from workflows.sla_types import TicketInput


class SlaLevelSteps(ActivitySteps):
    """The steps of a clock's level; ``TicketSlaWorkflow`` holds the state they read."""

    _ticket: TicketInput
    _sla: TicketClocks | PolicyClocks
    _assignee: Assignment | None
    _lead: StaffContact | None
    _moved_to: set[str]
    #: The patches ``sla-level-at-once`` and ``sla-level-records``, as the run took them.
    _level_at_once: bool
    _level_records: bool

    def _outcome_record(self, breach: LevelAction | None = None) -> dict[str, object]:
        """The ticket as automations on ``crmflow.ticket`` see it, at its outcome or at the
        ``breach`` of a clock."""
        assignee_id = self._assignee.assignee_id if self._assignee else ""
        breached = self._sla.breached_clocks()
        priority = self._sla.priority
        return messages.automation_record(self._ticket, priority, assignee_id, breached, breach)

    async def _take(self, action: LevelAction) -> None:
        """Do what a clock's level asks: note a level the breach overtook, offer a breach to
        automations, move the ticket, or tell someone (email, the assignee's in-app notice,
        a task), then emit the level's milestone."""
        if action.action == SKIPPED:
            self._show_step(action.step, "skipped: breached at the same time")
            return
        if action.action == BREACHED:
            record = self._outcome_record(action)
            await self._offer_outcome("breached", self._ticket.ticket_id, record, step=action.step)
            return
        if action.action == REASSIGN:
            if await self._reassign(action):
                self._sla.record_action(action, self._assignee_or_fail().assignee_id)
            return
        recipient = await self._recipient(action)
        if recipient is None:
            return
        moved_to = await self._reassign(action)
        alert = self._alert(action)
        email = messages.level_email(alert, recipient, action, self._lead, moved_to)
        if self._level_at_once:
            await self._tell_at_once(action, recipient, alert, email)
            return
        await self._send_email(action.step, email)
        if action.role is None:
            notice = messages.warning_notice(alert)
            await self._notify_staff(action.step, recipient.staff_id, notice)
        if action.task:  # built after the email: a priority changed meanwhile shows in the task
            task = messages.level_task(self._alert(action), recipient, action, self._lead)
            await self._create_task(action.step, task)
        self._sla.record_action(action, recipient.staff_id)
        if action.emit:
            data = messages.milestone(action, recipient, self._sla.priority)
            await self._emit(action.emit, data, step=action.step)

    async def _tell_at_once(
        self,
        action: LevelAction,
        recipient: StaffContact,
        alert: messages.ClockAlert,
        email: messages.Email,
    ) -> None:
        """A level's email, notice or task, and milestone, started together: one workflow
        task schedules them, the worker runs them side by side, and the level is done when
        the slowest is (rather than after each in turn)."""
        if self._level_records:
            await asyncio.gather(
                self._send_email(action.step, email), self._record_level(action, recipient, alert)
            )
            return
        steps = [self._send_email(action.step, email)]
        if action.role is None:
            notice = messages.warning_notice(alert)
            steps.append(self._notify_staff(action.step, recipient.staff_id, notice))
        if action.task:
            task = messages.level_task(alert, recipient, action, self._lead)
            steps.append(self._create_task(action.step, task))
        self._sla.record_action(action, recipient.staff_id)
        if action.emit:
            data = messages.milestone(action, recipient, self._sla.priority)
            steps.append(self._emit(action.emit, data, step=action.step))
        await asyncio.gather(*steps)

    async def _record_level(
        self, action: LevelAction, recipient: StaffContact, alert: messages.ClockAlert
    ) -> None:
        """A level's notice (to the assignee) or task (for a role), and its milestone, written
        by one local activity in one transaction, retried until written (an emission the run
        did without for ``OFFER_WITHIN`` before is now as durable as the task beside it)."""
        records = LevelRecords()
        if action.role is None:
            notice = messages.warning_notice(alert)
            records.notification = self._notification(action.step, recipient.staff_id, notice)
        if action.task:
            task = messages.level_task(alert, recipient, action, self._lead)
            records.task = self._level_task(action.step, task)
        self._sla.record_action(action, recipient.staff_id)
        if action.emit:
            data = messages.milestone(action, recipient, self._sla.priority)
            records.milestone = self._milestone(action.emit, data, step=action.step)
        recorded: LevelRecorded = await self._execute(
            RECORD_LEVEL,
            records,
            result_type=LevelRecorded,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
            summary=f"record {action.step}",
        )
        if records.notification is not None:
            self._show_step(f"notify:{action.step}", recipient.staff_id)
        if recorded.task is not None:
            self._show_step(
                f"task:{action.step}", f"task {recorded.task.task_id} for {recipient.staff_id}"
            )

    async def _recipient(self, action: LevelAction) -> StaffContact | None:
        """Whom a level tells: the assignee, their team lead, or the lead's manager (None,
        and noted, when the lead has no manager)."""
        if action.role is None:
            return messages.contact_of(self._assignee_or_fail())
        lead = await self._team_lead()
        if action.role != "manager":
            return lead
        if lead.manager_id is None:
            self._show_step(action.step, f"not sent: team lead {lead.staff_id} has no manager")
            return None
        return await self._look_up_staff(lead.manager_id)

    async def _reassign(self, action: LevelAction) -> str | None:
        """Move the ticket to the pool ``action.group``, once per pool; the new assignee's
        name, or None when it stays."""
        pool = action.group
        if pool is None or pool in self._moved_to:
            return None
        self._moved_to.add(pool)
        previous, step = self._assignee_or_fail(), action.reassign_step
        await self._release(previous)
        self._assignee = new = await self._assign(step, pool)
        self._show_step(step, f"{previous.assignee_id} -> {new.assignee_id}")
        await self._audit_step(
            step, {"from": previous.assignee_id, "to": new.assignee_id, "after": action.step}
        )
        await self._notify_staff(step, new.assignee_id, messages.reassigned_notice(self._ticket))
        return new.assignee_name

    async def _assign(self, step: str, pool: str) -> Assignment:
        self._set_stage("assigning")
        return await self._assign_owner(
            self._key(step),
            pool,
            self._ticket.ticket_id,
            summary=f"{step} ticket from {pool}",
            skills=self._ticket.skills,
        )

    async def _release(self, assignment: Assignment) -> None:
        await self._release_assignment(
            assignment.key, f"release ticket from {assignment.assignee_id}"
        )

    async def _team_lead(self) -> StaffContact:
        """The team lead of the assignee at the first breach (looked up once)."""
        if self._lead is None:
            assignee = self._assignee_or_fail()
            if assignee.manager_id is None:
                raise ApplicationError(
                    f"assignee {assignee.assignee_id} has no team lead (manager_id) to escalate to",
                    type="InvalidPolicy",
                    non_retryable=True,
                )
            self._lead = await self._look_up_staff(assignee.manager_id)
        return self._lead

    def _alert(self, action: LevelAction) -> messages.ClockAlert:
        """What an escalation tells of the clock ``action`` concerns, as of now."""
        facts = self._sla.email_facts(action.clock, action.due, workflow.now())
        return messages.ClockAlert(self._ticket, self._assignee_or_fail().assignee_name, facts)

    async def _send_email(self, step: str, email: messages.Email) -> None:
        request = email.request(self._key(f"email_{step}"), self._process_id)
        await self._email(step, request, within=timedelta(hours=1))

    async def _create_task(self, step: str, task: messages.Task) -> None:
        await self._task(step, self._level_task(step, task))

    def _level_task(self, step: str, task: messages.Task) -> TaskRequest:
        """A level's task: for ``task.assignee_id``, due in an hour around the clock."""
        return self._task_request(
            step,
            customer_id=self._ticket.customer_id,
            assignee_id=task.assignee_id,
            kind=f"sla_{step}",
            title=task.title,
            due=BusinessCalendar.around_the_clock().add(workflow.now(), timedelta(hours=1)),
            detail=task.detail,
        )

    def _assignee_or_fail(self) -> Assignment:
        if self._assignee is None:
            raise ApplicationError(
                "the ticket is not assigned yet", type="InvalidState", non_retryable=True
            )
        return self._assignee
