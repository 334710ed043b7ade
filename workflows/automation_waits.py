"""Where an automation's run waits, and the record events that end a wait or meet its goal.

``AutomationWaits`` is the base of ``workflows.automation.AutomationWorkflow``,
on ``AutomationSteps``: a ``wait`` step sleeps on a durable timer counted in
the calendar's business time, until an instant, or until a matching record
event (one that came since the previous wait ended counts too); a task step
can wait for a person to complete its task. The record events the run takes
(signal ``record_event``) update the record the expressions see and may meet
the goal, which ends any wait.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.automation_steps import AutomationSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.automation import Step
    from crm.domain.automation_events import matches
    from crm.domain.expressions import ExpressionError, holds
    from workflows.automation_types import AutomationInput, RecordEvent

#: From this patch on, a wait for a record event also takes a matching event that came
#: since the previous wait ended (while the steps before it ran); runs begun before it
#: waited only for events after the wait began.
EARLY_EVENTS = "early-events-count"

#: From this patch on, a task step's wait that times out first reads the task: one a
#: person completed while the run could not be told (Temporal away when the API signalled)
#: counts as done; runs that timed out before it took ``on_timeout``.
TASK_DONE_RECHECK = "task-done-recheck"


class AutomationWaits(AutomationSteps):
    """The run's waits, and the record events it takes."""

    def __init__(self, run: AutomationInput) -> None:
        super().__init__(run)
        self._awaiting: Step | None = None
        self._arrived = False
        #: Events taken since the last wait ended (not the one that enrolled the record).
        self._since_wait: list[RecordEvent] = []
        if run.event is not None:
            self._take_event(run.event)
            self._since_wait = []

    async def _wait_for_done(self, step: Step, task_id: int, following: str | None) -> str | None:
        """Wait for a person to complete task ``task_id`` (or the goal); at the step's
        ``wait_for_done`` go on at its ``on_timeout``."""
        task = step.task
        assert task is not None and task.wait_for_done is not None
        until = task.wait_for_done.after(workflow.now(), self._calendar)
        self._show_waiting(step, f"task {task_id} done", until)
        if not await self._until(step, until, lambda: task_id in self._tasks_done):
            if workflow.patched(TASK_DONE_RECHECK) and await self._task_done(task_id):
                self._tasks_done.add(task_id)
                self._show_step(f"wait:{step.id}", "task done (the run was not told)")
                return following
            self._show_step(f"wait:{step.id}", "task not done in time")
            return task.on_timeout or following
        self._show_step(f"wait:{step.id}", "goal met" if self._goal_met else "task done")
        return following

    async def _wait(self, step: Step, following: str | None) -> str | None:
        wait = step.wait
        assert wait is not None
        now = workflow.now()
        if wait.duration is not None:
            until, what = wait.duration.after(now, self._calendar), wait.duration.describe()
        elif wait.until is not None:
            until, what = self._instant(wait.until), wait.until
        else:
            assert wait.timeout is not None
            until, what = wait.timeout.after(now, self._calendar), "a record event"
        self._show_waiting(step, what, until)
        self._awaiting, self._arrived = (step if wait.event is not None else None), False
        if wait.event is not None and self._came_early(step) and workflow.patched(EARLY_EVENTS):
            self._arrived = True
        self._since_wait = []
        try:
            if not await self._until(step, until, lambda: self._arrived):
                self._show_step(f"wait:{step.id}", "timed out" if wait.event else "done")
                return (wait.on_timeout or following) if wait.event is not None else following
        finally:
            self._awaiting = None
            self._since_wait = []
        self._show_step(f"wait:{step.id}", "goal met" if self._goal_met else "event arrived")
        return following

    def _show_waiting(self, step: Step, what: str, until: datetime) -> None:
        """Show in ``state``, ``CrmStage`` and the UI that ``step`` waits for ``what``."""
        self._state.due[step.id] = until
        self._state.waiting_for = [what]
        self._show_step(f"waiting:{step.id}", f"{what} until {until.isoformat()}")
        self._set_stage(step.id)
        workflow.set_current_details(
            f"Step {step.id}: waiting for {what} until {until:%Y-%m-%d %H:%M} UTC."
        )

    async def _until(self, step: Step, until: datetime, ready: Callable[[], bool]) -> bool:
        """Wait for ``ready`` (or the goal): True when it came first, False at ``until``."""
        try:
            await workflow.wait_condition(
                lambda: ready() or self._goal_met,
                timeout=max(until - workflow.now(), timedelta(0)),
                timeout_summary=f"{step.id}: {self._state.waiting_for[0]}",
            )
        except TimeoutError:
            return False
        finally:
            self._state.waiting_for = []
            self._state.due.pop(step.id, None)
        return True

    # Record events and the goal.

    def _take_event(self, event: RecordEvent) -> None:
        self._view.take(event)
        goal = self._definition.goal
        if goal is not None and not self._goal_met:
            self._goal_met = self._condition_or_note(goal, "goal")
        if self._awaiting is None:
            self._since_wait.append(event)
        elif self._matches(self._awaiting, event):
            self._arrived = True

    def _came_early(self, step: Step) -> bool:
        """Whether an event taken since the last wait is the one ``step`` waits for."""
        return any(self._matches(step, event) for event in self._since_wait)

    def _matches(self, step: Step, event: RecordEvent) -> bool:
        """Whether ``event`` is what the wait of ``step`` waits for (on the record as it is)."""
        if step.wait is None or step.wait.event is None:
            return False
        try:
            return matches(step.wait.event, event.type, event.changed(), self._names())
        except ExpressionError as err:
            self._show_step(f"wait:{step.id}", f"condition failed: {err}")
            return False

    def _condition_or_note(self, source: str, what: str) -> bool:
        """A condition checked on an event; one that cannot be evaluated is noted, not met."""
        try:
            return holds(source, self._names())
        except ExpressionError as err:
            self._show_step(f"{what}:unevaluable", str(err))
            return False
