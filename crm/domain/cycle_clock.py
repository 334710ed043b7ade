"""One SLA clock of a ticket run in cycles, with its escalation ladder; see ``PolicyClocks``.

A cycle is an ``SlaClock`` against the clock's target in the ticket's calendar:
it pauses and resumes, reaches its ladder's levels and breaches at most once.
Pure and deterministic; every method takes the time as an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crm.domain.calendar import BusinessCalendar
from crm.domain.sla import CLOCK_LABELS, ClockMet, SlaClock
from crm.domain.sla_policies import (
    BREACHED,
    NOTIFY_ASSIGNEE,
    SKIPPED,
    ClockPolicy,
    EscalationLevel,
    LevelAction,
)

__all__ = ["CycleClock"]

_ZERO = timedelta(0)


class CycleClock:
    """One clock of a ticket, run in cycles against ``target`` in ``calendar``; counts its
    cycles, breaches and the business time of the cycles that ended, and keeps the cycles
    that ended within their target (``met``)."""

    def __init__(self, policy: ClockPolicy, target: timedelta, calendar: BusinessCalendar) -> None:
        self.name = policy.name
        self.policy = policy
        self.target = target
        self.calendar = calendar
        self.cycles = 0
        self.breaches = 0
        self.used_before = _ZERO
        self.current: SlaClock | None = None
        self.started_at: datetime | None = None
        self.breached_at: datetime | None = None
        self.levels_reached: list[str] = []
        self.dropped = False
        self.met: list[ClockMet] = []

    @property
    def active(self) -> bool:
        """Whether a cycle is in progress (running or paused)."""
        return self.current is not None and not self.current.stopped

    @property
    def running(self) -> bool:
        """Whether a cycle counts business time now."""
        return self.active and self.current is not None and self.current.running

    def start(self, now: datetime, *, paused: bool) -> None:
        """Begin a new cycle at ``now`` (paused if the ticket's status pauses this clock)."""
        self.end(now)
        self.cycles += 1
        self.current = SlaClock(self.name, self.target, self.calendar, now)
        self.started_at = now
        self.breached_at = None
        if paused:
            self.current.pause(now)

    def end(self, now: datetime, *, fulfilled: bool = True) -> None:
        """End the cycle in progress, counting a breach no look had seen yet. A cycle that
        ends within its target is ``met`` when a reply or the ticket's resolution
        ``fulfilled`` it, not when it stops for another reason (a cancelled ticket, a
        policy that no longer times this clock)."""
        if self.current is None or self.current.stopped:
            return
        self.current.stop(now)
        self.used_before += self.current.used
        if self.breached_at is None and self.current.used > self.target:
            self.breaches += 1
            self.breached_at = now
        if self.breached_at is None and fulfilled and self.started_at is not None:
            self.met.append(
                ClockMet(
                    self.name,
                    self.cycles,
                    self.step("met"),
                    self.started_at,
                    now,
                    self.current.used,
                    self.target,
                )
            )

    def pause(self, now: datetime) -> None:
        if self.current is not None:
            self.current.pause(now)

    def resume(self, now: datetime) -> None:
        if self.current is not None:
            self.current.resume(now)

    def retarget(self, target: timedelta, calendar: BusinessCalendar, now: datetime) -> None:
        """Measure from ``now`` against ``target`` in ``calendar``, keeping the time used."""
        self.target = target
        self.calendar = calendar
        if self.current is not None and not self.current.stopped:
            self.current.retarget(target, calendar, now)

    def used_at(self, now: datetime) -> timedelta:
        """Business time used over every cycle up to ``now``."""
        return self.used_before + (self.cycle_used(now) if self.active else _ZERO)

    def cycle_used(self, now: datetime) -> timedelta:
        """Business time the cycle in progress has used by ``now``; zero between cycles."""
        return self.current.used_at(now) if self.current is not None else _ZERO

    def step(self, level: str) -> str:
        """``level``'s step name in this cycle: ``next_reply_breach``, ``next_reply_2_breach``."""
        return f"{self.name}_{level}" if self.cycles <= 1 else f"{self.name}_{self.cycles}_{level}"

    def breach_due(self) -> datetime | None:
        """When the running cycle breaches, or breached; None between cycles or paused."""
        if self.breached_at is not None:
            return self.breached_at
        return self.current.due_after(self.target) if self.running and self.current else None

    def marks(self) -> list[tuple[timedelta, int, EscalationLevel | None]]:
        """The ladder's thresholds and the breach (None), in the order they are reached."""
        ladder = [(level.threshold(self.target), 0, level) for level in self.policy.ladder]
        return sorted([*ladder, (self.target, 1, None)], key=lambda mark: mark[:2])

    def next_due(self) -> tuple[datetime, str] | None:
        """The next level (or the breach) the running cycle reaches, and its label."""
        if not self.running or self.current is None:
            return None
        for threshold, _, level in self.marks():
            if level is None and self.breached_at is None:
                due = self.current.due_after(threshold)
                return (due, f"{CLOCK_LABELS[self.name]} breach") if due else None
            if level is not None and level.name not in self.current.reached:
                due = self.current.due_after(threshold)
                return (due, f"{CLOCK_LABELS[self.name]} {level.name}") if due else None
        return None

    def reach(self, now: datetime) -> list[LevelAction]:
        """Mark what the cycle in progress has reached by ``now`` since the last look and
        return what to do about it, in order; levels before the breach reached in the same
        look as the breach are only noted."""
        if not self.active or self.current is None:
            return []
        used = self.current.used_at(now)
        reached = [
            (threshold, level)
            for threshold, _, level in self.marks()
            if threshold <= used
            and (
                (level is None and self.breached_at is None)
                or (level is not None and level.name not in self.current.reached)
            )
        ]
        # The breach instant: a level before it says when it falls due, the breach itself
        # when it fell due (never after this look).
        due = self.breach_due() or now
        breach_now = any(level is None for _, level in reached)
        actions: list[LevelAction] = []
        for threshold, level in reached:
            if level is None:
                self.breaches += 1
                self.breached_at = due = min(due, now)
                actions.append(self._action("breach", BREACHED, due, now, used))
                continue
            self.current.reached[level.name] = now
            if level.name not in self.levels_reached:
                self.levels_reached.append(level.name)
            before = threshold < self.target
            if before and breach_now:
                actions.append(self._action(level.name, SKIPPED, due, now, used))
                continue
            actions.append(self._level_action(level, threshold, due, now, used))
        return actions

    def _action(
        self, level: str, action: str, due: datetime, now: datetime, used: timedelta
    ) -> LevelAction:
        return LevelAction(
            self.name,
            level,
            self.step(level),
            action,
            due,
            cycle=self.cycles,
            at=now,
            used_seconds=used.total_seconds(),
        )

    def _level_action(
        self,
        level: EscalationLevel,
        threshold: timedelta,
        due: datetime,
        now: datetime,
        used: timedelta,
    ) -> LevelAction:
        before_breach = threshold < self.target
        to_assignee_early = level.action == NOTIFY_ASSIGNEE and before_breach
        step = self.step(level.name)
        return LevelAction(
            clock=self.name,
            level=level.name,
            step=step,
            action=level.action,
            due=due,
            role=level.role,
            task=level.task and level.action != NOTIFY_ASSIGNEE,
            group=level.group,
            before_breach=before_breach,
            percent=round(100 * threshold / self.target),
            emit="ticket.warning" if to_assignee_early else "ticket.escalated",
            reassign_step=f"{step}_reassign",
            cycle=self.cycles,
            at=now,
            used_seconds=used.total_seconds(),
        )

    def status(self, now: datetime) -> str:
        """``met`` with no breach (and within target now), ``breached``, or ``not_started``."""
        if self.cycles == 0:
            return "not_started"
        over = self.active and self.cycle_used(now) > self.target
        return "breached" if self.breaches or over else "met"
