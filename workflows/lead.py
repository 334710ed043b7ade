"""Lead qualification: from a filled-in form to a sales rep, a nurture list, or silence.

The process a sales team runs for every prospect:

1. Enrich the lead: the company from the email domain (industry, size,
   country; go on with partial data when the provider knows nothing), the job
   title from the form.
2. Score it with the policy's rules (``crm.domain.lead_scoring``) and branch:
   - high: route it to a sales rep (territory by country, then fewest open
     leads, round-robin on ties) with a task due in 1 business hour and an
     email to the rep; the lead is the rep's open lead until that task is done;
   - medium: the follow-up sequence (below);
   - low: nurture, a marketing list entry and no sales task.
3. Follow-up sequence: the first email at once, follow-ups at day 2, 5 and 10
   while no answer came, and "unresponsive" at day 14. The events
   ``replied`` and ``meeting_booked`` end it: the lead is re-scored with the
   engagement and routed to a rep. ``unsubscribed`` and ``bounced`` end it
   for good: the address is never emailed again (a bounce marks it invalid).
   Quiet hours: no email outside 08:00-18:00 in the lead's time zone; a
   follow-up due at night waits for the morning.

The days and hours are policy (``crm.policy.leads``), count from the start of
the run, and travel in the input (``crm.domain.leads.LeadTerms``). Scoring,
routing, the sequence's plan and quiet hours are pure functions of
``crm.domain``; a change to them changes what replays compute, so it needs
``workflow.patched`` like any other change of workflow code.
"""

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows.activity_steps import ActivitySteps
from workflows.publishing_steps import REPORT_MILESTONES
from workflows.retries import RECORD_RETRY

with workflow.unsafe.imports_passed_through():
    from crm.domain.lead_scoring import LeadScore, score_lead
    from crm.domain.leads import (
        LEAD_EVENTS,
        call_due,
        follow_ups,
        local_time_text,
        send_time,
        territory_for,
    )
    from workflows.common import ProcessEvent, ProcessState
    from workflows.contracts import (
        ADD_TO_MARKETING_LIST,
        SAVE_LEAD,
        Assignment,
        EmailReceipt,
        EmailRequest,
        LeadSaved,
        MarketingListRequest,
        TaskRef,
    )
    from workflows.lead_types import LeadDossier, LeadInput, LeadResult

PROCESS_NAME = "lead"

#: From this patch on, a lead cancelled after it was routed closes the rep's
#: call task and ends the rep's assignment; before, the rep kept it as an open lead.
FREE_REP_ON_CANCEL = "free-rep-on-cancel"


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class LeadWorkflow(ActivitySteps):
    """One lead's qualification; see the module docstring for the process."""

    @workflow.init
    def __init__(self, lead: LeadInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=lead.lead_id)
        self._lead = lead
        self._terms = lead.terms
        self._dossier = LeadDossier.of(lead)

    @workflow.run
    async def run(self, lead: LeadInput) -> LeadResult:
        if problems := lead.problems():
            raise ApplicationError(
                "invalid lead input: " + "; ".join(problems),
                type="InvalidInput",
                non_retryable=True,
            )
        self._started = workflow.now()
        self._publish_process(lead.lead_id, "starting")
        try:
            await self._enrich_lead()
            await self._save("new")
            first = self._score("initial")
            if self._dossier.events.stopped_by is not None:
                outcome = self._dossier.events.stopped_by
            elif first.grade == "high":
                outcome = await self._route_to_rep("high score")
            elif first.grade == "medium":
                outcome = await self._follow_up()
            else:
                outcome = await self._nurture()
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):  # a cancel mid-activity is an ActivityError
                raise
            await self._close_as_cancelled()
            raise
        await self._finish(outcome)
        return self._dossier.result(outcome)

    @workflow.signal
    async def event(self, event: ProcessEvent) -> None:
        """Record what the lead did: replied, booked a meeting, unsubscribed, or mail bounced."""
        if event.type not in LEAD_EVENTS:
            workflow.logger.warning("lead qualification ignores event type %r", event.type)
            self._show_step(f"ignored:{event.type}", "not a lead event")
            return
        if not self._dossier.events.record(event.type, workflow.now()):
            return
        self._show_step(f"event:{event.type}")
        await self._audit_step(f"event:{event.type}", {"data": event.data})

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the run waits for, its due times and the steps taken so far."""
        following_up = self._state.stage in ("following_up", "quiet_hours")
        self._state.waiting_for = list(LEAD_EVENTS) if following_up else []
        self._state.details = self._dossier.details()
        return self._state

    # The steps of the process, in order.

    async def _enrich_lead(self) -> None:
        self._set_stage("enriching")
        company = await self._look_up_company(self._dossier.company.domain)
        if company is not None:
            self._dossier.company = company
            self._show_step("enrich", f"{company.industry}, {company.employees} employees")

    def _score(self, reason: str) -> LeadScore:
        score = score_lead(self._terms.scoring, self._dossier.facts())
        self._dossier.scores.append(score)
        matched = ", ".join(score.matched) or "no rule matched"
        self._show_step(f"score:{reason}", f"{score.points} ({score.grade}): {matched}")
        return score

    async def _follow_up(self) -> str:
        """The sequence for a medium lead; returns how it ended."""
        self._set_stage("following_up")
        if self._dossier.do_not_email is not None:
            self._show_step(
                "follow_up", f"address is on the do-not-email list: {self._dossier.do_not_email}"
            )
            return self._dossier.do_not_email
        await self._email_lead("first_touch", "lead_first_touch", {})
        if "first_touch" in self._dossier.emails_sent:
            since_arrival = (workflow.now() - self._started).total_seconds()
            contact = {"channel": "email", "seconds_since_arrival": since_arrival}
            await self._emit(
                "lead.first_contacted", contact, step="first_contacted", since=REPORT_MILESTONES
            )
        if not self._dossier.events.heard_back():
            await self._save("contacted")
        for follow_up in follow_ups(self._terms):  # day 2, 5 and 10 by default
            if await self._heard_back_by(follow_up.day, follow_up.step):
                return await self._answered()
            await self._email_lead(follow_up.step, "lead_follow_up", follow_up.context())
        if await self._heard_back_by(self._terms.unresponsive_day, "unresponsive"):  # day 14
            return await self._answered()
        return "unresponsive"

    async def _answered(self) -> str:
        """The lead answered the sequence: stop for good, or re-score and route it."""
        if self._dossier.events.stopped_by is not None:
            return self._dossier.events.stopped_by
        self._score("engagement")
        return await self._route_to_rep(" and ".join(self._dossier.events.at))

    async def _route_to_rep(self, reason: str) -> str:
        self._set_stage("routing")
        territory = territory_for(self._terms, self._dossier.country)
        self._dossier.territory = territory  # from here on, a cancel frees whichever rep it got
        # A cancel waits for the assignment and the call task being written, so
        # that freeing the rep comes after them.
        cancellation = (
            ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if workflow.patched(FREE_REP_ON_CANCEL)
            else ActivityCancellationType.TRY_CANCEL
        )
        rep = await self._assign_owner(
            self._rep_key(),
            territory.pool,
            self._lead.lead_id,
            summary=f"assign rep from {territory.pool}",
            cancellation_type=cancellation,
        )
        self._dossier.owner = rep
        self._show_step("assign_rep", f"{rep.assignee_id} ({territory.name})")
        due = call_due(self._terms, territory, workflow.now())
        self._state.due["call_lead"] = due
        task = await self._create_rep_task(rep, due, reason, cancellation)
        await self._save("qualified")
        briefing = self._dossier.rep_briefing(rep, territory, task.task_id, due, reason)
        await self._send_email("rep_assigned", rep.assignee_email, "lead_assigned", briefing)
        await self._emit(
            "lead.routed",
            {"owner_id": rep.assignee_id, "territory": territory.name, "reason": reason},
            step="routed",
        )
        return "qualified"

    async def _nurture(self) -> str:
        self._set_stage("nurturing")
        await workflow.execute_activity(
            ADD_TO_MARKETING_LIST,
            MarketingListRequest(
                key=self._key("marketing_list"),
                process_id=self._process_id,
                list_name=self._terms.marketing_list,
                lead_id=self._lead.lead_id,
                email=self._lead.email,
                name=self._lead.name,
                score=self._dossier.scores[-1].points,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"marketing list {self._terms.marketing_list}",
        )
        self._show_step("marketing_list", self._terms.marketing_list)
        return "nurture"

    async def _finish(self, outcome: str) -> None:
        self._set_stage(outcome)
        self._state.outcome = outcome
        await self._save(outcome)
        score = self._dossier.scores[-1]
        await self._audit_step(
            "outcome", {"outcome": outcome, "score": score.points, "grade": score.grade}
        )
        await self._offer_outcome(
            outcome, self._dossier.lead.lead_id, self._dossier.outcome_record()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_cancelled(self) -> None:
        reason = workflow.cancellation_reason() or "cancelled"
        self._set_stage("cancelled")
        self._state.outcome = "cancelled"
        await self._audit_step("outcome", {"outcome": "cancelled", "reason": reason})
        if self._dossier.territory is not None and workflow.patched(FREE_REP_ON_CANCEL):
            await self._free_rep(reason)
        await self._offer_outcome(
            "cancelled", self._dossier.lead.lead_id, self._dossier.outcome_record()
        )

    async def _free_rep(self, reason: str) -> None:
        """The cancelled lead is no longer the rep's: close its call task, end the assignment.

        By key, so an assignment or task whose activity the cancel interrupted
        (and which may have committed anyway) is closed too.
        """
        await self._close_tasks(f"lead cancelled: {reason}", "close the call task")
        rep = self._dossier.owner_id or "the rep"
        await self._release_assignment(self._rep_key(), f"release {rep}")

    def _rep_key(self) -> str:
        return self._key("assign_rep")

    # Helpers: each a wait, a single activity call or a change of the visible state.

    async def _heard_back_by(self, day: int, deadline_name: str) -> bool:
        """Wait until the lead answers or ``day`` has come; True if they answered."""
        deadline = self._started + timedelta(days=day)
        self._state.due[deadline_name] = deadline
        workflow.set_current_details(
            f"Waiting for an answer until day {day} ({deadline:%Y-%m-%d %H:%M} UTC)."
        )
        return await self._heard_back_before(deadline, f"day {day}")

    async def _heard_back_before(self, moment: datetime, timeout_summary: str) -> bool:
        """Wait until the lead answers or ``moment`` has come; True if they answered."""
        remaining = max(moment - workflow.now(), timedelta(0))
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                self._dossier.events.heard_back, timeout=remaining, timeout_summary=timeout_summary
            )
        return self._dossier.events.heard_back()

    async def _email_lead(self, step: str, template: str, context: dict[str, object]) -> None:
        """Email the lead in the next allowed hour, unless they answered in the meantime."""
        now = workflow.now()
        send_at = send_time(self._terms, now)
        if send_at > now:
            self._set_stage("quiet_hours")
            self._state.due[f"send_{step}"] = send_at
            local = local_time_text(send_at, self._terms.send_calendar.timezone)
            self._show_step(f"quiet_hours:{step}", f"held until {local}")
            workflow.set_current_details(f"Quiet hours: {step} goes out at {local}.")
            await self._heard_back_before(send_at, "quiet hours end")
            self._set_stage("following_up")
        if self._dossier.events.heard_back():
            self._show_step(f"email:{step}", "not sent: the lead answered")
            return
        context = {"name": self._lead.name, "company": self._dossier.company_name, **context}
        if await self._send_email(step, self._lead.email, template, context):
            self._dossier.emails_sent.append(step)

    async def _create_rep_task(
        self, rep: Assignment, due: datetime, reason: str, cancellation: ActivityCancellationType
    ) -> TaskRef:
        score = self._dossier.scores[-1]
        company = self._dossier.company_name
        request = self._task_request(
            "call_lead",
            customer_id=self._lead.lead_id,
            assignee_id=rep.assignee_id,
            kind="call_lead",
            title=f"Call {self._lead.name}" + (f" at {company}" if company else ""),
            due=due,
            detail=f"Routed on {reason}; score {score.points} ({score.grade}).",
            assignment_key=rep.key,
        )
        return await self._task("call_lead", request, cancellation_type=cancellation)

    async def _send_email(
        self, step: str, to: str, template: str, context: dict[str, object]
    ) -> bool:
        """Send one email; False when it could not be sent (a refused lead address bounces)."""
        request = EmailRequest(
            key=self._key(f"email_{step}"),
            process_id=self._process_id,
            to=to,
            template=template,
            context=context,
        )
        sent = await self._email(step, request, within=timedelta(days=1))
        if isinstance(sent, EmailReceipt):
            return True
        cause = sent.cause
        refused = isinstance(cause, ApplicationError) and cause.type == "RecipientRejected"
        if refused and to == self._lead.email:
            self._dossier.events.record("bounced", workflow.now())
        return False

    async def _save(self, status: str) -> None:
        saved: LeadSaved = await workflow.execute_activity(
            SAVE_LEAD,
            self._dossier.record(self._process_id, status),
            result_type=LeadSaved,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"lead record: {status}",
        )
        self._dossier.do_not_email = saved.do_not_email
