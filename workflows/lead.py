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
the run, and travel in the input (``crm.domain.leads.LeadTerms``).

Scoring runs inside the workflow: it is a pure, fast function of the input's
rules and the facts the run has gathered, so it needs no activity, and the
history shows its inputs (the enrichment result, the events). A change to how
``crm.domain.lead_scoring`` matches rules changes what replays compute, so it needs
``workflow.patched`` like any other change of workflow code.
"""

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows.retries import RECORD_RETRY
from workflows.steps import ProcessSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import BusinessCalendar, CalendarError
    from crm.domain.lead_scoring import (
        LeadFacts,
        LeadScore,
        ScoringError,
        score_lead,
        validate_model,
    )
    from crm.domain.leads import (
        ENGAGEMENT_EVENTS,
        LEAD_EVENTS,
        STOP_EVENTS,
        LeadTerms,
        Territory,
        local_time_text,
        territory_for,
    )
    from workflows.common import ProcessEvent, ProcessState
    from workflows.contracts import (
        ADD_TO_MARKETING_LIST,
        ASSIGN_OWNER,
        SAVE_LEAD,
        Assignment,
        AssignmentRequest,
        CompanyProfile,
        EmailReceipt,
        EmailRequest,
        LeadRecord,
        LeadSaved,
        MarketingListRequest,
        TaskRef,
    )

PROCESS_NAME = "lead"

#: From this patch on, a lead cancelled after it was routed closes the rep's
#: call task and ends the rep's assignment; before, the rep kept it as an open lead.
FREE_REP_ON_CANCEL = "free-rep-on-cancel"


@dataclass
class LeadInput:
    """A prospect who filled in a form; ``terms`` carry the policy and the lead's time zone."""

    lead_id: str
    email: str
    name: str
    source: str
    company: str | None = None
    title: str | None = None
    country: str | None = None
    terms: LeadTerms = field(default_factory=LeadTerms)


@dataclass
class LeadResult:
    """How qualification ended: ``qualified``, ``nurture``, ``unresponsive``,
    ``unsubscribed`` or ``bounced``; the score is the last one computed."""

    lead_id: str
    outcome: str
    score: int
    grade: str
    first_grade: str
    owner_id: str | None
    emails_sent: list[str]
    events: dict[str, datetime]


def lead_process_id(lead_id: str) -> str:
    """The workflow id of a lead's qualification, its business key."""
    return f"lead-{lead_id}"


@workflow.defn
class LeadWorkflow(ProcessSteps):
    """One lead's qualification; see the module docstring for the process."""

    @workflow.init
    def __init__(self, lead: LeadInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=lead.lead_id)
        self._lead = lead
        self._terms = lead.terms
        self._events: dict[str, datetime] = {}
        self._stopped_by: str | None = None
        self._company = CompanyProfile(domain=_domain_of(lead.email), complete=False)
        self._scores: list[LeadScore] = []
        self._territory: Territory | None = None
        self._owner: Assignment | None = None
        self._emails_sent: list[str] = []
        self._do_not_email: str | None = None

    @workflow.run
    async def run(self, lead: LeadInput) -> LeadResult:
        _validate(lead)
        self._started = workflow.now()
        self._publish_process(lead.lead_id, "starting")
        try:
            await self._enrich_lead()
            await self._save("new")
            first = self._score("initial")
            if self._stopped_by is not None:
                outcome = self._stopped_by
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
        last = self._scores[-1]
        return LeadResult(
            lead_id=lead.lead_id,
            outcome=outcome,
            score=last.points,
            grade=last.grade,
            first_grade=first.grade,
            owner_id=self._owner.assignee_id if self._owner else None,
            emails_sent=list(self._emails_sent),
            events=dict(self._events),
        )

    @workflow.signal
    async def event(self, event: ProcessEvent) -> None:
        """Record what the lead did: replied, booked a meeting, unsubscribed, or mail bounced."""
        if event.type not in LEAD_EVENTS:
            workflow.logger.warning("lead qualification ignores event type %r", event.type)
            self._show_step(f"ignored:{event.type}", "not a lead event")
            return
        if event.type in self._events:
            return
        self._events[event.type] = workflow.now()
        if event.type in STOP_EVENTS and self._stopped_by is None:
            self._stopped_by = event.type
        self._show_step(f"event:{event.type}")
        await self._audit_step(f"event:{event.type}", {"data": event.data})

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the run waits for, its due times and the steps taken so far."""
        following_up = self._state.stage in ("following_up", "quiet_hours")
        self._state.waiting_for = list(LEAD_EVENTS) if following_up else []
        score = self._scores[-1] if self._scores else None
        self._state.details = {
            "source": self._lead.source,
            "score": score.points if score else None,
            "grade": score.grade if score else None,
            "matched_rules": list(score.matched) if score else [],
            "territory": self._territory.name if self._territory else None,
            "owner_id": self._owner.assignee_id if self._owner else None,
            "emails_sent": list(self._emails_sent),
            "events": {name: at.isoformat() for name, at in self._events.items()},
            "do_not_email": self._do_not_email,
            "timezone": self._terms.send_calendar.timezone,
            "enrichment_complete": self._company.complete,
        }
        return self._state

    # The steps of the process, in order.

    async def _enrich_lead(self) -> None:
        self._set_stage("enriching")
        company = await self._look_up_company(self._company.domain)
        if company is None:
            self._company = CompanyProfile(domain=self._company.domain, complete=False)
        else:
            self._company = company
            self._show_step("enrich", f"{company.industry}, {company.employees} employees")

    def _score(self, reason: str) -> LeadScore:
        engagement = [e for e in self._events if e in ENGAGEMENT_EVENTS]
        score = score_lead(
            self._terms.scoring,
            LeadFacts(
                title=self._lead.title,
                industry=self._company.industry,
                source=self._lead.source,
                country=self._country(),
                employees=self._company.employees,
                events=engagement,
            ),
        )
        self._scores.append(score)
        matched = ", ".join(score.matched) or "no rule matched"
        self._show_step(f"score:{reason}", f"{score.points} ({score.grade}): {matched}")
        return score

    async def _follow_up(self) -> str:
        """The sequence for a medium lead; returns how it ended."""
        self._set_stage("following_up")
        if self._do_not_email is not None:
            self._show_step(
                "follow_up", f"address is on the do-not-email list: {self._do_not_email}"
            )
            return self._do_not_email
        await self._email_lead("first_touch", "lead_first_touch", {})
        if not self._heard_back():
            await self._save("contacted")
        days = self._terms.follow_up_days
        for number, day in enumerate(days, start=1):  # day 2, 5 and 10 by default
            if await self._heard_back_by(day, f"follow_up_{number}"):
                return await self._answered()
            await self._email_lead(
                f"follow_up_{number}",
                "lead_follow_up",
                {"number": number, "total": len(days), "final": number == len(days)},
            )
        if await self._heard_back_by(self._terms.unresponsive_day, "unresponsive"):  # day 14
            return await self._answered()
        return "unresponsive"

    async def _answered(self) -> str:
        """The lead answered the sequence: stop for good, or re-score and route it."""
        if self._stopped_by is not None:
            return self._stopped_by
        self._score("engagement")
        return await self._route_to_rep(" and ".join(self._events))

    async def _route_to_rep(self, reason: str) -> str:
        self._set_stage("routing")
        territory = territory_for(self._terms, self._country())
        self._territory = territory  # from here on, a cancel frees whichever rep it got
        # A cancel waits for the assignment and the call task being written, so
        # that freeing the rep comes after them.
        cancellation = (
            ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if workflow.patched(FREE_REP_ON_CANCEL)
            else ActivityCancellationType.TRY_CANCEL
        )
        self._owner = await workflow.execute_activity(
            ASSIGN_OWNER,
            AssignmentRequest(
                key=self._rep_key(),
                process_id=self._process_id,
                pool=territory.pool,
                subject_id=self._lead.lead_id,
            ),
            result_type=Assignment,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"assign rep from {territory.pool}",
            cancellation_type=cancellation,
        )
        self._show_step("assign_rep", f"{self._owner.assignee_id} ({territory.name})")
        calendar = BusinessCalendar.from_spec(territory.calendar)
        due = calendar.add(workflow.now(), timedelta(hours=self._terms.rep_task_hours))
        self._state.due["call_lead"] = due
        task = await self._create_rep_task(due, reason, cancellation)
        await self._save("qualified")
        await self._email_rep(territory, task, due, reason)
        return "qualified"

    async def _nurture(self) -> str:
        self._set_stage("nurturing")
        score = self._scores[-1]
        await workflow.execute_activity(
            ADD_TO_MARKETING_LIST,
            MarketingListRequest(
                key=self._key("marketing_list"),
                process_id=self._process_id,
                list_name=self._terms.marketing_list,
                lead_id=self._lead.lead_id,
                email=self._lead.email,
                name=self._lead.name,
                score=score.points,
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
        score = self._scores[-1]
        await self._audit_step(
            "outcome",
            {"outcome": outcome, "score": score.points, "grade": score.grade},
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_cancelled(self) -> None:
        reason = workflow.cancellation_reason() or "cancelled"
        self._set_stage("cancelled")
        self._state.outcome = "cancelled"
        await self._audit_step("outcome", {"outcome": "cancelled", "reason": reason})
        if self._territory is not None and workflow.patched(FREE_REP_ON_CANCEL):
            await self._free_rep(reason)

    async def _free_rep(self, reason: str) -> None:
        """The cancelled lead is no longer the rep's: close its call task, end the assignment.

        By key, so an assignment or task whose activity the cancel interrupted
        (and which may have committed anyway) is closed too.
        """
        await self._close_tasks(f"lead cancelled: {reason}", "close the call task")
        rep = self._owner.assignee_id if self._owner else "the rep"
        await self._release_assignment(self._rep_key(), f"release {rep}")

    def _rep_key(self) -> str:
        return self._key("assign_rep")

    # Helpers: each a wait, a single activity call or a change of the visible state.

    def _heard_back(self) -> bool:
        return bool(self._events)

    async def _heard_back_by(self, day: int, deadline_name: str) -> bool:
        """Wait until the lead answers or ``day`` has come; True if they answered."""
        deadline = self._started + timedelta(days=day)
        self._state.due[deadline_name] = deadline
        remaining = max(deadline - workflow.now(), timedelta(0))
        workflow.set_current_details(
            f"Waiting for an answer until day {day} ({deadline:%Y-%m-%d %H:%M} UTC)."
        )
        try:
            await workflow.wait_condition(
                self._heard_back, timeout=remaining, timeout_summary=f"day {day}"
            )
        except TimeoutError:
            return self._heard_back()
        return True

    async def _email_lead(self, step: str, template: str, context: dict[str, object]) -> None:
        """Email the lead in the next allowed hour, unless they answered in the meantime."""
        calendar = BusinessCalendar.from_spec(self._terms.send_calendar)
        now = workflow.now()
        send_at = calendar.next_open(now)
        if send_at > now:
            self._set_stage("quiet_hours")
            self._state.due[f"send_{step}"] = send_at
            local = local_time_text(send_at, self._terms.send_calendar.timezone)
            self._show_step(f"quiet_hours:{step}", f"held until {local}")
            workflow.set_current_details(f"Quiet hours: {step} goes out at {local}.")
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    self._heard_back, timeout=send_at - now, timeout_summary="quiet hours end"
                )
            self._set_stage("following_up")
        if self._heard_back():
            self._show_step(f"email:{step}", "not sent: the lead answered")
            return
        receipt = await self._send_email(
            step,
            self._lead.email,
            template,
            {"name": self._lead.name, "company": self._company_name(), **context},
        )
        if receipt is not None:
            self._emails_sent.append(step)

    async def _email_rep(
        self, territory: Territory, task: TaskRef, due: datetime, reason: str
    ) -> None:
        rep = self._owner_or_fail()
        score = self._scores[-1]
        await self._send_email(
            "rep_assigned",
            rep.assignee_email,
            "lead_assigned",
            {
                "rep_name": rep.assignee_name,
                "territory": territory.name,
                "reason": reason,
                "lead_name": self._lead.name,
                "lead_email": self._lead.email,
                "title": self._lead.title,
                "company": self._company_name(),
                "employees": self._company.employees,
                "country": self._country(),
                "source": self._lead.source,
                "score": score.points,
                "grade": score.grade,
                "matched": list(score.matched),
                "due": local_time_text(due, territory.calendar.timezone),
                "task_id": task.task_id,
            },
        )

    async def _create_rep_task(
        self, due: datetime, reason: str, cancellation: ActivityCancellationType
    ) -> TaskRef:
        rep = self._owner_or_fail()
        score = self._scores[-1]
        company = self._company_name()
        return await self._task(
            "call_lead",
            customer_id=self._lead.lead_id,
            assignee_id=rep.assignee_id,
            kind="call_lead",
            title=f"Call {self._lead.name}" + (f" at {company}" if company else ""),
            due=due,
            detail=f"Routed on {reason}; score {score.points} ({score.grade}).",
            assignment_key=rep.key,
            cancellation_type=cancellation,
        )

    async def _send_email(
        self, step: str, to: str, template: str, context: dict[str, object]
    ) -> EmailReceipt | None:
        """Send one email; None when it could not be sent (a refused lead address bounces)."""
        sent = await self._email(
            step,
            EmailRequest(
                key=self._key(f"email_{step}"),
                process_id=self._process_id,
                to=to,
                template=template,
                context=context,
            ),
            within=timedelta(days=1),
        )
        if isinstance(sent, EmailReceipt):
            return sent
        cause = sent.cause
        refused = isinstance(cause, ApplicationError) and cause.type == "RecipientRejected"
        if refused and to == self._lead.email:
            self._events.setdefault("bounced", workflow.now())
            self._stopped_by = self._stopped_by or "bounced"
        return None

    async def _save(self, status: str) -> None:
        score = self._scores[-1] if self._scores else None
        company = self._company
        saved: LeadSaved = await workflow.execute_activity(
            SAVE_LEAD,
            LeadRecord(
                lead_id=self._lead.lead_id,
                process_id=self._process_id,
                email=self._lead.email,
                name=self._lead.name,
                source=self._lead.source,
                timezone=self._terms.send_calendar.timezone,
                status=status,
                company=self._company_name(),
                title=self._lead.title,
                country=self._country(),
                industry=company.industry,
                employees=company.employees,
                score=score.points if score else None,
                grade=score.grade if score else None,
                owner_id=self._owner.assignee_id if self._owner else None,
                email_valid="bounced" not in self._events,
            ),
            result_type=LeadSaved,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"lead record: {status}",
        )
        self._do_not_email = saved.do_not_email

    def _country(self) -> str | None:
        return (self._lead.country or self._company.country or "").upper() or None

    def _company_name(self) -> str | None:
        return self._lead.company or self._company.name

    def _owner_or_fail(self) -> Assignment:
        if self._owner is None:
            raise ApplicationError("no rep assigned yet", type="InvalidState", non_retryable=True)
        return self._owner


def _domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def _validate(lead: LeadInput) -> None:
    problems = [
        f"{name} is required"
        for name in ("lead_id", "name", "source")
        if not str(getattr(lead, name)).strip()
    ]
    local, at, domain = lead.email.partition("@")
    if not (local and at and "." in domain):
        problems.append(f"email {lead.email!r} is not an email address")
    terms = lead.terms
    days = [*terms.follow_up_days, terms.unresponsive_day]
    if any(day < 1 for day in days) or any(
        later <= earlier for earlier, later in itertools.pairwise(days)
    ):
        problems.append(f"follow-up days must be positive and strictly increasing, got {days}")
    try:
        validate_model(terms.scoring)
    except ScoringError as err:
        problems.append(str(err))
    try:
        BusinessCalendar.from_spec(terms.send_calendar)
        for territory in terms.territories:
            BusinessCalendar.from_spec(territory.calendar)
    except CalendarError as err:
        problems.append(str(err))
    if terms.fallback_territory not in {t.name for t in terms.territories}:
        problems.append(f"fallback territory {terms.fallback_territory!r} is not a territory")
    if problems:
        raise ApplicationError(
            "invalid lead input: " + "; ".join(problems),
            type="InvalidInput",
            non_retryable=True,
        )
