"""Checking an automation document before it is stored: every mistake, with where it is.

``parse_definition`` turns a document (already parsed from YAML or JSON) into
an ``AutomationDefinition`` or raises ``DefinitionError`` listing each problem
with the JSON pointer of its place (``/steps/3/wait/until``):

- the shape: unknown keys, missing ones, wrong types (the JSON Schema
  ``definition_schema`` publishes);
- names: field types, event types, duration units, the calendar, staff and
  pools of the policy, step ids that ``next``, branches, timeouts and an
  approval's ``on_rejected`` / ``on_expired`` name;
- starts: the process is one an automation can start, each field is a field
  of its request body (``POST /v1/onboardings``'s for an onboarding) and every
  required one is given;
- HTTP calls: the URL is a literal http(s) URL with a host and no
  credentials (where it may connect is checked at call time), and
  ``on_failure`` names a step;
- CEL: each expression compiles, names only ``record``, ``previous``,
  ``event``, ``vars`` and ``now``, only declared fields and variables that a
  ``set`` step (or a start's ``save_as``) defines, and gives the right type
  (a condition true or false, an ``until`` a timestamp, an approval's
  ``subject`` a string) when evaluated on a sample record with a value of
  every declared field's type. A type error on a branch the sample does not
  take is found at run time, where it fails that step visibly;
- templates: each parses in Jinja's sandbox and uses only those names, and an
  email renders on the sample record into both parts of the policy's layout
  under Gmail's clipping size;
- the graph: every step reachable from the first, no loop without a wait or
  an approval (it would spin), no wait or approval longer than ``MAX_WAIT``, no
  task due or re-enrolment pause further than ``MAX_DELAY``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import TypeAdapter, ValidationError

from crm.automations.templates import (
    UserTemplateError,
    render_user_template,
    template_fields,
    template_names,
)
from crm.domain.automation import (
    ACTIONS,
    DURATION_UNITS,
    FIELD_TYPES,
    MAX_DELAY,
    MAX_WAIT,
    RECORD_EVENT_TYPES,
    AutomationDefinition,
    Duration,
    EmailStep,
    EventMatch,
    HttpStep,
    Person,
    Schedule,
    StartStep,
    Step,
)
from crm.domain.automation_events import event_names, names_for
from crm.domain.calendar import BusinessCalendar, CalendarError
from crm.domain.cron import cron_problem
from crm.domain.expressions import (
    NAMES,
    SAMPLE_VALUES,
    ExpressionError,
    evaluate,
    referenced_fields,
    referenced_names,
)
from crm.domain.process_outcomes import OutcomeObject, outcome_object
from crm.mail.layout import GMAIL_CLIP_BYTES, FooterLinks, compose
from crm.platform.urls import address_problem, url_problem
from crm.policy import Policy
from processes import PROCESSES
from processes.registry import ProcessDescriptor

_ADAPTER: TypeAdapter[AutomationDefinition] = TypeAdapter(AutomationDefinition)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class FieldProblem:
    """One mistake in a document: where (a JSON pointer) and what."""

    pointer: str
    message: str


class DefinitionError(ValueError):
    """The document is not a valid automation; ``errors`` says where and why."""

    def __init__(self, errors: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors))
        self.errors = errors


def definition_schema() -> dict[str, Any]:
    """The JSON Schema of an automation document."""
    schema: dict[str, Any] = _ADAPTER.json_schema()
    schema["title"] = "crmflow automation"
    return schema


def parse_document_text(text: str, content_type: str) -> dict[str, Any]:
    """A YAML or JSON document (by ``content_type``) as a mapping; raises DefinitionError."""
    try:
        document = json.loads(text) if "json" in content_type else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise DefinitionError([FieldProblem("", f"not valid YAML or JSON: {err}")]) from None
    if not isinstance(document, dict):
        raise DefinitionError([FieldProblem("", "an automation is a mapping of keys to values")])
    return document


def parse_definition(
    document: Mapping[str, Any], policy: Policy, *, allowed_hosts: Sequence[str] | None = None
) -> AutomationDefinition:
    """The definition ``document`` describes; raises DefinitionError listing every problem.

    With ``allowed_hosts`` (the operator's outbound allowlist), an ``http`` step's URL
    whose host is an address inside the network is refused too, as a webhook endpoint's
    is on submit; a definition already stored is read without it."""
    try:
        definition = _ADAPTER.validate_python(dict(document))
    except ValidationError as err:
        raise DefinitionError(
            [FieldProblem(_pointer(e["loc"]), _shape_message(e)) for e in err.errors()]
        ) from None
    published = outcome_object(definition.object)
    if published is not None:
        problems = list(_published_fields(definition, published))
        if problems:
            raise DefinitionError(problems)
        definition = replace(definition, fields={**published.fields, **definition.fields})
    problems = list(_Checker(definition, policy, allowed_hosts).problems())
    if problems:
        raise DefinitionError(problems)
    return definition


def _published_fields(
    definition: AutomationDefinition, published: OutcomeObject
) -> Iterator[FieldProblem]:
    """An automation on a process's outcomes has the fields the process publishes; it may
    name them, with their types, but no others."""
    for name, kind in definition.fields.items():
        if published.fields.get(name) != kind:
            yield FieldProblem(
                _at("fields", name),
                f"{definition.object} publishes {dict(published.fields)}; "
                f"{name!r} is not one of them with type {kind!r}",
            )


def _shape_message(error: Any) -> str:
    """pydantic's message of a shape error, in the document's terms."""
    if error["type"] == "unexpected_keyword_argument":
        return f"unknown key {error['loc'][-1]!r}"
    if error["type"] in ("missing", "missing_argument"):
        return f"{error['loc'][-1]!r} is required"
    message: str = error["msg"]
    return message


def _at(where: str, *keys: str) -> str:
    """``where`` (a pointer, or its first key) with ``keys`` appended, escaped."""
    base = where if where.startswith("/") else _pointer((where,))
    return base + _pointer(keys)


def _pointer(location: tuple[int | str, ...]) -> str:
    parts = (str(part).replace("~", "~0").replace("/", "~1") for part in location)
    return "".join(f"/{part}" for part in parts)


class _Checker:
    """The checks beyond the shape, in document order."""

    def __init__(
        self, definition: AutomationDefinition, policy: Policy, allowed_hosts: Sequence[str] | None
    ) -> None:
        self._definition = definition
        self._policy = policy
        self._allowed_hosts = allowed_hosts
        self._staff = {member.id for member in policy.staff}
        self._step_ids = {step.id for step in definition.steps}
        self._variables = {name for step in definition.steps for name in step.set or {}}
        self._variables |= {
            step.start.save_as for step in definition.steps if step.start and step.start.save_as
        }
        self._variables |= {
            step.http.save_as for step in definition.steps if step.http and step.http.save_as
        }
        self._names = self._sample_names()

    def problems(self) -> Iterator[FieldProblem]:
        d = self._definition
        if not _ID.match(d.id):
            yield FieldProblem("/id", "lower-case letters, digits and '-', at most 63")
        if outcome_object(d.object) is None and not _NAME.match(d.object):
            yield FieldProblem("/object", "lower-case letters, digits and '_', at most 63")
        for name, kind in d.fields.items():
            if not _NAME.match(name):
                yield FieldProblem(_at("fields", name), "a field name is lower-case, digits, '_'")
            if kind not in FIELD_TYPES:
                yield FieldProblem(
                    _at("fields", name), f"unknown type {kind!r}; one of {FIELD_TYPES}"
                )
        if d.calendar not in self._policy.calendars:
            yield FieldProblem(
                "/calendar",
                f"unknown calendar {d.calendar!r}; known: {sorted(self._policy.calendars)}",
            )
        yield from self._trigger()
        if d.enrollment.after is not None:
            if not d.enrollment.reenroll:
                yield FieldProblem("/enrollment/after", "only with reenroll: true")
            yield from self._duration(
                "/enrollment/after", d.enrollment.after, limit=False, in_calendar_time=True
            )
        if d.goal is not None:
            yield from self._expression("/goal", d.goal, "bool")
        if not d.steps:
            yield FieldProblem("/steps", "an automation needs at least one step")
            return
        seen: set[str] = set()
        for index, step in enumerate(d.steps):
            where = f"/steps/{index}"
            if step.id in seen:
                yield FieldProblem(f"{where}/id", f"step id {step.id!r} is used twice")
            seen.add(step.id)
            if not _NAME.match(step.id):
                yield FieldProblem(f"{where}/id", "a step id is lower-case letters, digits, '_'")
            yield from self._step(where, step)
        yield from self._graph()

    def _trigger(self) -> Iterator[FieldProblem]:
        trigger = self._definition.trigger
        if trigger.schedule is not None:
            yield from self._schedule(trigger.schedule)
            if trigger.types or trigger.changed or trigger.condition is not None:
                yield FieldProblem("/trigger", "a schedule takes no types, changed or condition")
            return
        if not trigger.types:
            yield FieldProblem("/trigger/types", f"name at least one of {self._event_types()}")
        yield from self._event_match("/trigger", trigger)

    def _schedule(self, schedule: Schedule) -> Iterator[FieldProblem]:
        if outcome_object(self._definition.object) is not None:
            yield FieldProblem("/trigger/schedule", "a process's outcomes enrol its records")
        if self._definition.fields:
            yield FieldProblem("/fields", "a scheduled run has no record: declare no fields")
        if (problem := cron_problem(schedule.cron)) is not None:
            yield FieldProblem("/trigger/schedule/cron", problem)
        try:
            ZoneInfo(schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            yield FieldProblem(
                "/trigger/schedule/timezone", f"unknown time zone {schedule.timezone!r}"
            )

    def _event_match(self, where: str, match: EventMatch) -> Iterator[FieldProblem]:
        types = self._event_types()
        for index, event_type in enumerate(match.types):
            if event_type not in types:
                yield FieldProblem(
                    f"{where}/types/{index}",
                    f"unknown event type {event_type!r}; one of {types}",
                )
        for index, name in enumerate(match.changed):
            if name not in self._definition.fields:
                yield FieldProblem(f"{where}/changed/{index}", self._unknown_field(name))
        if match.condition is not None:
            yield from self._expression(f"{where}/condition", match.condition, "bool")

    def _event_types(self) -> tuple[str, ...]:
        """A record's event types, or the outcomes of the process the object is."""
        published = outcome_object(self._definition.object)
        return RECORD_EVENT_TYPES if published is None else published.outcomes

    def _step(self, where: str, step: Step) -> Iterator[FieldProblem]:
        actions = [name for name in ACTIONS if getattr(step, name) is not None]
        if len(actions) != 1:
            yield FieldProblem(
                where,
                f"a step has exactly one of {', '.join(ACTIONS)}"
                + (f"; this one has {', '.join(actions)}" if actions else ""),
            )
            return
        if step.next is not None:
            yield from self._step_ref(f"{where}/next", step.next)
        if step.email is not None:
            yield from self._person(f"{where}/email/to", step.email.to, "email")
            problems = [
                *self._template(f"{where}/email/subject", step.email.subject),
                *self._template(f"{where}/email/body", step.email.body),
            ]
            yield from problems or self._email_renders(f"{where}/email", step.email)
        elif step.task is not None:
            yield from self._person(f"{where}/task/assignee", step.task.assignee, "task")
            yield from self._template(f"{where}/task/title", step.task.title)
            yield from self._template(f"{where}/task/detail", step.task.detail)
            yield from self._duration(f"{where}/task/due", step.task.due, limit=False)
            if step.task.wait_for_done is not None:
                yield from self._duration(
                    f"{where}/task/wait_for_done", step.task.wait_for_done, limit=True
                )
            if step.task.on_timeout is not None:
                if step.task.wait_for_done is None:
                    yield FieldProblem(
                        f"{where}/task/on_timeout", "on_timeout belongs to a task waited for"
                    )
                yield from self._step_ref(f"{where}/task/on_timeout", step.task.on_timeout)
        elif step.wait is not None:
            yield from self._wait(f"{where}/wait", step)
        elif step.branch is not None:
            if not step.branch.cases:
                yield FieldProblem(f"{where}/branch/cases", "a branch needs at least one case")
            for index, case in enumerate(step.branch.cases):
                yield from self._expression(
                    f"{where}/branch/cases/{index}/condition", case.condition, "bool"
                )
                yield from self._step_ref(f"{where}/branch/cases/{index}/next", case.next)
            if step.branch.otherwise is not None:
                yield from self._step_ref(f"{where}/branch/otherwise", step.branch.otherwise)
        elif step.set is not None:
            if not step.set:
                yield FieldProblem(f"{where}/set", "set at least one variable")
            for name, source in step.set.items():
                if not _NAME.match(name):
                    yield FieldProblem(
                        _at(where, "set", name), "a variable name is lower-case, '_'"
                    )
                yield from self._expression(_at(where, "set", name), source, None)
        elif step.start is not None:
            yield from self._start(f"{where}/start", step.start)
        elif step.approval is not None:
            approval = step.approval
            yield from self._person(f"{where}/approval/approver", approval.approver, "approval")
            yield from self._expression(f"{where}/approval/subject", approval.subject, "string")
            yield from self._duration(f"{where}/approval/timeout", approval.timeout, limit=True)
            if approval.on_rejected is not None:
                yield from self._step_ref(f"{where}/approval/on_rejected", approval.on_rejected)
            if approval.on_expired is not None:
                yield from self._step_ref(f"{where}/approval/on_expired", approval.on_expired)
        elif step.http is not None:
            yield from self._http(f"{where}/http", step.http)
        elif step.end is not None and not _NAME.match(step.end.outcome):
            yield FieldProblem(f"{where}/end/outcome", "an outcome is lower-case letters, '_'")

    def _wait(self, where: str, step: Step) -> Iterator[FieldProblem]:
        wait = step.wait
        assert wait is not None
        kinds = [k for k in ("duration", "until", "event") if getattr(wait, k) is not None]
        if len(kinds) != 1:
            yield FieldProblem(where, "a wait has exactly one of duration, until, event")
            return
        if wait.duration is not None:
            yield from self._duration(f"{where}/duration", wait.duration, limit=True)
        if wait.until is not None:
            yield from self._expression(f"{where}/until", wait.until, "timestamp")
        if wait.event is not None:
            yield from self._event_match(f"{where}/event", wait.event)
            if wait.timeout is None:
                yield FieldProblem(f"{where}/timeout", "a wait for an event needs a timeout")
            else:
                yield from self._duration(f"{where}/timeout", wait.timeout, limit=True)
            if wait.on_timeout is not None:
                yield from self._step_ref(f"{where}/on_timeout", wait.on_timeout)
        elif wait.timeout is not None or wait.on_timeout is not None:
            yield FieldProblem(where, "timeout and on_timeout belong to a wait for an event")

    def _start(self, where: str, start: StartStep) -> Iterator[FieldProblem]:
        startable = _startable()
        process = startable.get(start.process)
        if process is None or process.request_model is None:
            yield FieldProblem(
                f"{where}/process",
                f"unknown process {start.process!r}; an automation starts one of "
                f"{sorted(startable)}",
            )
            return
        body = process.request_model(self._policy).model_fields
        for name, source in start.fields.items():
            if name not in body:
                yield FieldProblem(
                    _at(where, "fields", name),
                    f"{process.name} takes no field {name!r}; its fields: {sorted(body)}",
                )
            else:
                yield from self._expression(_at(where, "fields", name), source, None)
        missing = [name for name, info in body.items() if info.is_required()]
        missing = [name for name in missing if name not in start.fields]
        if missing:
            yield FieldProblem(
                f"{where}/fields", f"{process.name} needs {', '.join(map(repr, missing))}"
            )
        if start.save_as is not None and not _NAME.match(start.save_as):
            yield FieldProblem(f"{where}/save_as", "a variable name is lower-case, '_'")

    def _http(self, where: str, call: HttpStep) -> Iterator[FieldProblem]:
        problem = url_problem(call.url)
        if problem is None and self._allowed_hosts is not None:
            problem = address_problem(call.url, list(self._allowed_hosts))
        if problem is not None:
            yield FieldProblem(f"{where}/url", problem)
        for name, source in call.body.items():
            if not name:
                yield FieldProblem(f"{where}/body", "a body key is not empty")
            yield from self._expression(_at(where, "body", name), source, None)
        if call.save_as is not None and not _NAME.match(call.save_as):
            yield FieldProblem(f"{where}/save_as", "a variable name is lower-case, '_'")
        if call.on_failure is not None:
            yield from self._step_ref(f"{where}/on_failure", call.on_failure)

    def _duration(
        self, where: str, duration: Duration, *, limit: bool, in_calendar_time: bool = False
    ) -> Iterator[FieldProblem]:
        """Problems of ``duration``: its unit, at least 1 (``limit``: a wait) or 0, and at most
        ``MAX_WAIT`` (a wait) or ``MAX_DELAY``, as long as it lasts when the run counts it
        (``in_calendar_time``: a business unit counted as that many calendar ones, as
        re-enrolment counts its pause)."""
        if duration.unit not in DURATION_UNITS:
            yield FieldProblem(
                f"{where}/unit", f"unknown unit {duration.unit!r}; one of {DURATION_UNITS}"
            )
            return
        if duration.amount < (1 if limit else 0):
            yield FieldProblem(f"{where}/amount", "must be at least 1" if limit else "must be >= 0")
            return
        length = self._length(duration, in_calendar_time)
        if limit and length > MAX_WAIT:
            yield FieldProblem(f"{where}/amount", f"a wait lasts at most {MAX_WAIT.days} days")
        elif length > MAX_DELAY:
            yield FieldProblem(f"{where}/amount", f"at most {MAX_DELAY.days} days (ten years)")

    def _length(self, duration: Duration, in_calendar_time: bool) -> timedelta:
        """How long ``duration`` lasts from the sample instant, in the definition's calendar
        (a business day is as long as it takes to pass one) unless ``in_calendar_time``."""
        policy = self._policy.calendars.get(self._definition.calendar)
        try:
            if policy is None or in_calendar_time or not duration.unit.startswith("business_"):
                return duration.calendar_length()
            start: datetime = SAMPLE_VALUES["timestamp"]
            calendar = BusinessCalendar.from_spec(policy.spec())
            return duration.after(start, calendar) - start
        except CalendarError:  # more business time than the calendar has in ten years
            return timedelta.max
        except OverflowError:  # longer than datetime can count
            return timedelta.max

    def _person(self, where: str, person: Person, use: str) -> Iterator[FieldProblem]:
        given = [k for k in ("staff", "owner", "field", "pool") if getattr(person, k)]
        if len(given) != 1:
            yield FieldProblem(where, "name exactly one of staff, owner, field, pool")
            return
        if person.staff is not None and person.staff not in self._staff:
            yield FieldProblem(f"{where}/staff", f"unknown staff member {person.staff!r}")
        if person.pool is not None:
            if use != "task":
                yield FieldProblem(f"{where}/pool", f"an {use} goes to a person, not a pool")
            elif person.pool not in self._policy.pools:
                yield FieldProblem(
                    f"{where}/pool",
                    f"unknown pool {person.pool!r}; known: {sorted(self._policy.pools)}",
                )
            if person.manager:
                yield FieldProblem(f"{where}/manager", "a pool has no manager")
        elif person.claim:
            yield FieldProblem(f"{where}/claim", "only a pool's task is claimed")
        if person.field is not None and person.field not in self._definition.fields:
            yield FieldProblem(f"{where}/field", self._unknown_field(person.field))
        if person.owner and self._definition.owner_field not in self._definition.fields:
            yield FieldProblem(
                f"{where}/owner",
                f"the owner is in field {self._definition.owner_field!r} (owner_field), "
                "which fields does not declare",
            )

    def _template(self, where: str, source: str) -> Iterator[FieldProblem]:
        try:
            names = template_names(source)
        except UserTemplateError as err:
            yield FieldProblem(where, f"template: {err}")
            return
        for name in sorted(names - set(NAMES)):
            yield FieldProblem(where, f"unknown name {name!r}; templates use {', '.join(NAMES)}")
        for scope, name in sorted(template_fields(source)):
            if scope in ("record", "previous") and name not in self._definition.fields:
                yield FieldProblem(where, f"{scope}.{name}: {self._unknown_field(name)}")
            elif scope == "vars" and name not in self._variables:
                yield FieldProblem(where, f"variable {name!r} is set by no step")

    def _email_renders(self, where: str, email: EmailStep) -> Iterator[FieldProblem]:
        """The email renders on the sample record, into both parts of the policy's layout."""
        try:
            subject = " ".join(render_user_template(email.subject, self._names).split())
        except UserTemplateError as err:
            yield FieldProblem(f"{where}/subject", f"template on a sample record: {err}")
            return
        try:
            body = render_user_template(email.body, self._names)
        except UserTemplateError as err:
            yield FieldProblem(f"{where}/body", f"template on a sample record: {err}")
            return
        links = FooterLinks("https://crm.example.com/email/unsubscribe/sample")
        parts = compose(subject, body, self._policy.email, links)
        size = len(parts.html.encode()) + len(parts.text.encode())
        if size > GMAIL_CLIP_BYTES:
            yield FieldProblem(
                f"{where}/body",
                f"{size} bytes on a sample record; Gmail clips above {GMAIL_CLIP_BYTES}",
            )

    def _expression(self, where: str, source: str, kind: str | None) -> Iterator[FieldProblem]:
        try:
            names = referenced_names(source)
        except ExpressionError as err:
            yield FieldProblem(where, f"CEL: {err}")
            return
        unknown = sorted(names - set(NAMES))
        for name in unknown:
            yield FieldProblem(where, f"CEL: unknown name {name!r}; use {', '.join(NAMES)}")
        bad_field = False
        for scope, name in sorted(referenced_fields(source)):
            if scope == "vars" and name not in self._variables:
                bad_field = True
                yield FieldProblem(where, f"CEL: variable {name!r} is set by no step")
            elif scope != "vars" and name not in self._definition.fields:
                bad_field = True
                yield FieldProblem(where, f"CEL: {scope}.{name}: {self._unknown_field(name)}")
        if unknown or bad_field:
            return
        try:
            value = evaluate(source, self._names)
        except ExpressionError as err:
            if not err.of_data:  # a sample value no real record would have
                yield FieldProblem(where, f"CEL: {err}")
            return
        if kind == "bool" and not isinstance(value, bool):
            yield FieldProblem(
                where, f"CEL: a condition must be true or false; this one gives {_cel_type(value)}"
            )
        if kind == "timestamp" and type(value).__name__ != "datetime":
            yield FieldProblem(
                where, f"CEL: this must give a timestamp; it gives {_cel_type(value)}"
            )
        if kind == "string" and not isinstance(value, str):
            yield FieldProblem(where, f"CEL: this must give a string; it gives {_cel_type(value)}")

    def _step_ref(self, where: str, step_id: str) -> Iterator[FieldProblem]:
        if step_id not in self._step_ids:
            yield FieldProblem(where, f"no step has id {step_id!r}")

    def _graph(self) -> Iterator[FieldProblem]:
        d = self._definition
        if len(self._step_ids) < len(d.steps):
            return  # reported as ids used twice: the graph is not what the author meant
        if any(ref not in self._step_ids for s in d.steps for ref in _refs(d, s) if ref):
            return  # reported as unknown step ids
        reachable: set[str] = set()
        frontier = [d.steps[0].id]
        while frontier:
            step_id = frontier.pop()
            if step_id in reachable:
                continue
            reachable.add(step_id)
            frontier += [ref for ref in _refs(d, d.step(step_id)) if ref]
        for index, step in enumerate(d.steps):
            if step.id not in reachable:
                yield FieldProblem(f"/steps/{index}", f"step {step.id!r} is never reached")
        waits = {step.id for step in d.steps if step.waits}
        if loop := _loop_without(d, waits):
            yield FieldProblem(
                f"/steps/{d.index(loop[0])}",
                f"steps {' -> '.join(loop)} loop without a wait or an approval",
            )

    def _unknown_field(self, name: str) -> str:
        return f"unknown field {name!r}; declared: {sorted(self._definition.fields) or 'none'}"

    def _sample_names(self) -> dict[str, Any]:
        d = self._definition
        sample = {name: SAMPLE_VALUES.get(kind) for name, kind in d.fields.items()}
        variables: dict[str, Any] = {}
        names = names_for(
            d,
            record=sample,
            previous=sample,
            event=event_names("updated", SAMPLE_VALUES["timestamp"], list(d.fields)),
            variables=variables,
            now=SAMPLE_VALUES["timestamp"],
        )
        for step in d.steps:  # a variable's sample value is its expression's on the sample
            if step.start is not None and step.start.save_as is not None:
                variables[step.start.save_as] = f"{step.start.process}-sample"
            if step.http is not None and step.http.save_as is not None:
                variables[step.http.save_as] = 200
            for name, source in (step.set or {}).items():
                try:
                    variables[name] = evaluate(source, {**names, "vars": variables})
                except ExpressionError:
                    variables[name] = None
        names["vars"] = variables
        return names


def _cel_type(value: Any) -> str:
    """The CEL type of a value, as a user reads it (``a string``, ``an int``)."""
    names = {bool: "a bool", int: "an int", float: "a double", str: "a string"}
    names |= {list: "a list", dict: "a map", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _startable() -> dict[str, ProcessDescriptor]:
    """The processes a ``start`` step may start, by name: those the API starts."""
    return {p.name: p for p in PROCESSES if p.build is not None and p.request_model is not None}


def _refs(definition: AutomationDefinition, step: Step) -> list[str | None]:
    try:
        return definition.successors(step)
    except KeyError:
        return []


def _loop_without(definition: AutomationDefinition, waits: set[str]) -> list[str] | None:
    """A cycle of steps none of which waits, if there is one."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        path.append(step_id)
        for ref in _refs(definition, definition.step(step_id)):
            if ref is None or ref in waits:
                continue
            if state.get(ref) == 1:
                return [*path[path.index(ref) :], ref]
            if ref not in state and (found := visit(ref)):
                return found
        path.pop()
        state[step_id] = 2
        return None

    for step in definition.steps:
        if step.id not in waits and step.id not in state and (found := visit(step.id)):
            return found
    return None
