"""Checking automation documents: every shipped example passes, and each kind of mistake is
refused with the JSON pointer of its place and a message saying what is wrong."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from crm.automations.validation import (
    DefinitionError,
    definition_schema,
    parse_definition,
    parse_document_text,
)
from crm.domain.automation import AutomationDefinition, customer_of
from crm.policy import Policy

ONE_ACTION = "a step has exactly one of email, task, wait, branch, set, start, approval, http, end"
EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "automations").glob("*.yaml"))
POLICY = Policy()


def document() -> dict[str, Any]:
    """A valid automation the cases below each break in one place."""
    return {
        "id": "big-deal-follow-up",
        "name": "Follow up on a big deal",
        "object": "deal",
        "fields": {
            "name": "string",
            "amount": "double",
            "owner_id": "string",
            "contact_email": "string",
            "tags": "list",
            "closes_at": "timestamp",
        },
        "trigger": {
            "types": ["updated"],
            "changed": ["amount"],
            "condition": "record.amount >= 10000.0",
        },
        "steps": [
            {"id": "pause", "wait": {"duration": {"amount": 2, "unit": "days"}}},
            {
                "id": "tell_owner",
                "email": {
                    "to": {"owner": True},
                    "subject": "{{ record.name }} grew",
                    "body": "It is worth {{ record.amount }} now.",
                },
            },
            {"id": "done", "end": {"outcome": "told"}},
        ],
    }


class _Remove:
    """Delete the key or list item at a pointer."""


REMOVE = _Remove()


@dataclass(frozen=True)
class Insert:
    """Insert ``value`` into a list at a pointer's index."""

    value: Any


def edited(changes: dict[str, Any]) -> dict[str, Any]:
    """``document()`` with each JSON pointer set to its value (REMOVE, Insert), in order."""
    doc = document()
    for pointer, value in changes.items():
        *path, last = pointer.lstrip("/").split("/")
        container: Any = doc
        for part in path:
            container = container[int(part)] if isinstance(container, list) else container[part]
        key: Any = int(last) if isinstance(container, list) else last
        if isinstance(value, _Remove):
            del container[key]
        elif isinstance(value, Insert):
            container.insert(key, copy.deepcopy(value.value))
        else:
            container[key] = copy.deepcopy(value)
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The (pointer, message) of each problem parse_definition finds in ``doc``."""
    with pytest.raises(DefinitionError) as caught:
        parse_definition(doc, POLICY)
    return [(problem.pointer, problem.message) for problem in caught.value.errors]


def assert_refused(doc: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """``doc`` is refused with exactly these pointers, each message containing its phrase."""
    found = problems(doc)
    assert [pointer for pointer, _ in found] == [pointer for pointer, _ in expected], found
    for (pointer, message), (_, phrase) in zip(found, expected, strict=True):
        assert phrase in message, (pointer, message)


def task(assignee: dict[str, Any], title: str = "Call about {{ record.name }}") -> dict[str, Any]:
    return {
        "id": "call",
        "task": {"assignee": assignee, "title": title, "due": {"amount": 1, "unit": "days"}},
    }


def event_wait(**extra: Any) -> dict[str, Any]:
    return {"event": {"types": ["updated"]}, "timeout": {"amount": 3, "unit": "days"}, **extra}


# --- what is accepted -------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_shipped_example_is_a_valid_automation(path: Path) -> None:
    definition = parse_definition(yaml.safe_load(path.read_text()), POLICY)

    assert isinstance(definition, AutomationDefinition)
    assert definition.id == path.stem


def test_there_are_examples_to_check() -> None:
    assert len(EXAMPLES) >= 4


def test_the_base_document_of_these_tests_is_valid() -> None:
    definition = parse_definition(document(), POLICY)

    assert [step.id for step in definition.steps] == ["pause", "tell_owner", "done"]
    assert definition.steps[0].wait is not None
    assert definition.steps[0].wait.duration is not None
    assert definition.steps[0].wait.duration.amount == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"/trigger/condition": 'record.tags.exists(t, t == "vip")'},
        {"/trigger/condition": "record.tags.all(tag, tag != record.name)"},
        {"/trigger/condition": "previous.amount < record.amount && event.type == 'updated'"},
        {"/trigger/condition": '"amount" in event.changed && record.closes_at > now'},
        {"/steps/0/wait": {"until": 'record.closes_at - duration("720h")'}},
        {"/steps/0/wait/duration/amount": 400},
        {"/steps/0/wait/duration": {"amount": 400 * 24, "unit": "hours"}},
        {"/steps/1/email/to": {"staff": "csm-ana", "manager": True}},
        {"/steps/1/email/to": {"field": "contact_email"}},
        {"/steps/1": task({"pool": "csm-smb"})},
        {"/steps/1": task({"owner": True, "manager": True})},
        {"/enrollment": {"reenroll": True, "after": {"amount": 30, "unit": "days"}}},
        {"/steps/1": Insert({"id": "count", "set": {"seen": "record.amount * 2.0"}})},
        {
            "/steps/1": Insert({"id": "count", "set": {"big": "record.amount > 1.0"}}),
            "/goal": "vars.big && record.name == 'x'",
        },
    ],
    ids=[
        "comprehension-variable",
        "comprehension-variable-beside-a-field",
        "previous-and-event",
        "event-changed-and-now",
        "until-a-timestamp",
        "wait-of-exactly-max-wait",
        "wait-of-max-wait-in-hours",
        "manager-of-known-staff",
        "email-to-a-declared-field",
        "task-for-a-known-pool",
        "task-for-the-owners-manager",
        "enrollment-after-with-reenroll",
        "set-step",
        "variable-a-set-step-defines",
    ],
)
def test_a_correct_variation_of_the_document_is_accepted(changes: dict[str, Any]) -> None:
    assert isinstance(parse_definition(edited(changes), POLICY), AutomationDefinition)


def test_a_loop_through_a_duration_wait_is_accepted() -> None:
    doc = edited(
        {
            "/steps/2": Insert(
                {
                    "id": "again",
                    "branch": {
                        "cases": [{"condition": "record.amount > 1.0", "next": "pause"}],
                    },
                }
            )
        }
    )

    definition = parse_definition(doc, POLICY)

    assert definition.successors(definition.step("again")) == ["pause", "done"]


def test_a_loop_through_a_wait_for_an_event_is_accepted() -> None:
    doc = edited(
        {
            "/steps/0/wait": event_wait(on_timeout="done"),
            "/steps/0/next": "tell_owner",
            "/steps/1/next": "pause",
        }
    )

    assert parse_definition(doc, POLICY).steps[1].next == "pause"


def start(**fields: str) -> dict[str, Any]:
    """A step starting an onboarding of the deal's customer, with ``fields`` changed."""
    body = {
        "customer_id": "record.name",
        "company_name": "record.name",
        "contact_name": "record.name",
        "contact_email": "record.contact_email",
        "plan": "'growth'",
    }
    return {"id": "onboard", "start": {"process": "onboarding", "fields": body | fields}}


def approval(**extra: Any) -> dict[str, Any]:
    """A step asking the owner's manager to approve the deal, with ``extra`` keys."""
    asked = {
        "approver": {"owner": True, "manager": True},
        "subject": "'Discount on ' + record.name",
        "timeout": {"amount": 2, "unit": "business_days"},
    }
    return {"id": "approve", "approval": asked | extra}


def test_a_start_step_and_an_approval_with_its_branches_are_accepted() -> None:
    doc = edited(
        {
            "/steps/1": Insert(approval(on_rejected="done", on_expired="tell_owner")),
            "/steps/2": Insert(start() | {"next": "done"}),
        }
    )
    doc["steps"][2]["start"]["save_as"] = "onboarding_id"
    doc["steps"][3]["email"]["body"] = "Started {{ vars.onboarding_id }}"

    definition = parse_definition(doc, POLICY)

    step = definition.step("approve")
    assert definition.successors(step) == ["onboard", "done", "tell_owner"]
    assert definition.step("onboard").start is not None


def test_an_approval_without_branches_goes_on_at_the_next_step_whatever_its_outcome() -> None:
    definition = parse_definition(edited({"/steps/1": Insert(approval())}), POLICY)

    assert definition.successors(definition.step("approve")) == ["tell_owner"] * 3


def test_a_loop_through_an_approval_is_accepted() -> None:
    doc = edited({"/steps/1": Insert(approval(on_rejected="approve"))})

    assert parse_definition(doc, POLICY).steps[1].approval is not None


def http(**extra: Any) -> dict[str, Any]:
    """A step posting the deal's name and amount to a receiver, with ``extra`` keys."""
    call = {
        "url": "https://hooks.example.com/deals",
        "body": {"deal": "record.name", "amount": "record.amount"},
    }
    return {"id": "notify", "http": call | extra}


def test_an_http_step_with_its_status_variable_and_failure_branch_is_accepted() -> None:
    doc = edited({"/steps/1": Insert(http(save_as="notified", on_failure="done"))})
    doc["steps"][2]["email"]["body"] = "The receiver answered {{ vars.notified }}"

    definition = parse_definition(doc, POLICY)

    step = definition.step("notify")
    assert step.http is not None and step.http.body["deal"] == "record.name"
    assert definition.successors(step) == ["tell_owner", "done"]


def test_an_http_step_without_on_failure_goes_on_at_the_next_step() -> None:
    definition = parse_definition(edited({"/steps/1": Insert(http())}), POLICY)

    assert set(definition.successors(definition.step("notify"))) == {"tell_owner"}


# --- what is refused, and where -----------------------------------------------------------------


MISTAKES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    # shape
    ("unknown-top-level-key", {"/colour": "red"}, [("/colour", "unknown key 'colour'")]),
    (
        "unknown-key-in-a-step",
        {"/steps/0/colour": "red"},
        [("/steps/0/colour", "unknown key 'colour'")],
    ),
    (
        "unknown-key-in-a-wait",
        {"/steps/0/wait/colour": "red"},
        [("/steps/0/wait/colour", "unknown key 'colour'")],
    ),
    (
        "amount-not-a-number",
        {"/steps/0/wait/duration/amount": "x"},
        [("/steps/0/wait/duration/amount", "valid integer")],
    ),
    ("missing-name", {"/name": REMOVE}, [("/name", "'name' is required")]),
    ("missing-steps", {"/steps": REMOVE}, [("/steps", "'steps' is required")]),
    ("no-steps", {"/steps": []}, [("/steps", "at least one step")]),
    # names
    ("automation-id-with-capitals", {"/id": "Big-Deal"}, [("/id", "lower-case letters")]),
    ("object-with-capitals", {"/object": "Deal"}, [("/object", "lower-case letters")]),
    ("field-name-with-capitals", {"/fields/Stage": "string"}, [("/fields/Stage", "lower-case")]),
    (
        "unknown-field-type",
        {"/fields/closes_at": "date"},
        [("/fields/closes_at", "unknown type 'date'")],
    ),
    ("unknown-calendar", {"/calendar": "emea"}, [("/calendar", "unknown calendar 'emea'")]),
    (
        "step-id-with-a-dash",
        {"/steps/2/id": "all-done"},
        [("/steps/2/id", "a step id is lower-case letters, digits, '_'")],
    ),
    (
        "duplicate-step-id",
        {"/steps/2/id": "pause"},
        [("/steps/2/id", "step id 'pause' is used twice")],
    ),
    (
        "outcome-with-spaces",
        {"/steps/2/end/outcome": "All told"},
        [("/steps/2/end/outcome", "lower-case")],
    ),
    # trigger
    (
        "unknown-event-type",
        {"/trigger/types/0": "edited"},
        [("/trigger/types/0", "unknown event type 'edited'")],
    ),
    ("trigger-without-types", {"/trigger/types": []}, [("/trigger/types", "at least one of")]),
    (
        "changed-names-an-undeclared-field",
        {"/trigger/changed/0": "stage"},
        [("/trigger/changed/0", "unknown field 'stage'")],
    ),
    # CEL
    (
        "cel-syntax-error",
        {"/trigger/condition": "record.amount >"},
        [("/trigger/condition", "syntax error")],
    ),
    (
        "cel-type-error",
        {"/trigger/condition": "record.name + 1"},
        [("/trigger/condition", "string + int")],
    ),
    (
        "condition-not-boolean",
        {"/trigger/condition": "record.amount"},
        [("/trigger/condition", "a condition must be true or false")],
    ),
    (
        "goal-not-boolean",
        {"/goal": "record.name"},
        [("/goal", "a condition must be true or false")],
    ),
    (
        "branch-condition-not-boolean",
        {
            "/steps/1": Insert(
                {"id": "check", "branch": {"cases": [{"condition": "1", "next": "done"}]}}
            )
        },
        [("/steps/1/branch/cases/0/condition", "must be true or false")],
    ),
    (
        "until-not-a-timestamp",
        {"/steps/0/wait": {"until": "record.amount"}},
        [("/steps/0/wait/until", "this must give a timestamp")],
    ),
    (
        "undeclared-record-field",
        {"/trigger/condition": "record.nope == 1"},
        [("/trigger/condition", "record.nope: unknown field 'nope'")],
    ),
    (
        "undeclared-previous-field",
        {"/trigger/condition": "previous.nope == 1"},
        [("/trigger/condition", "previous.nope: unknown field 'nope'")],
    ),
    (
        "variable-no-step-sets",
        {"/trigger/condition": "vars.x == 1"},
        [("/trigger/condition", "variable 'x' is set by no step")],
    ),
    (
        "unknown-top-level-name",
        {"/trigger/condition": "foo == 1"},
        [("/trigger/condition", "unknown name 'foo'")],
    ),
    (
        "set-expression-type-error",
        {"/steps/1": Insert({"id": "count", "set": {"n": "record.name + 1"}})},
        [("/steps/1/set/n", "string + int")],
    ),
    (
        "set-nothing",
        {"/steps/1": Insert({"id": "count", "set": {}})},
        [("/steps/1/set", "set at least one variable")],
    ),
    # actions
    (
        "step-with-two-actions",
        {"/steps/2/email": {"to": {"owner": True}, "subject": "s", "body": "b"}},
        [("/steps/2", f"{ONE_ACTION}; this one has email, end")],
    ),
    (
        "step-with-no-action",
        {"/steps/1": Insert({"id": "nothing"})},
        [("/steps/1", ONE_ACTION)],
    ),
    (
        "branch-without-cases",
        {"/steps/1": Insert({"id": "check", "branch": {"cases": []}})},
        [("/steps/1/branch/cases", "at least one case")],
    ),
    # start steps
    (
        "start-of-an-unknown-process",
        {"/steps/1": Insert(start() | {"start": {"process": "ticket", "fields": {}}})},
        [("/steps/1/start/process", "unknown process 'ticket'; an automation starts one of")],
    ),
    (
        "start-of-a-process-only-processes-start",
        {"/steps/1": Insert(start() | {"start": {"process": "approval", "fields": {}}})},
        [("/steps/1/start/process", "'lead', 'onboarding', 'renewal', 'sla'")],
    ),
    (
        "start-with-a-field-the-request-has-not",
        {"/steps/1": Insert(start(colour="'red'"))},
        [("/steps/1/start/fields/colour", "onboarding takes no field 'colour'; its fields:")],
    ),
    (
        "start-without-a-required-field",
        {"/steps/1": Insert(start()), "/steps/1/start/fields/plan": REMOVE},
        [("/steps/1/start/fields", "onboarding needs 'plan'")],
    ),
    (
        "start-field-cel-error",
        {"/steps/1": Insert(start(plan="record.plan"))},
        [("/steps/1/start/fields/plan", "record.plan: unknown field 'plan'")],
    ),
    (
        "start-saved-under-a-bad-name",
        {"/steps/1": Insert(start()), "/steps/1/start/save_as": "Onboarding"},
        [("/steps/1/start/save_as", "a variable name is lower-case")],
    ),
    (
        "start-without-fields",
        {"/steps/1": Insert({"id": "onboard", "start": {"process": "onboarding"}})},
        [("/steps/1/start/fields", "'fields' is required")],
    ),
    # approvals
    (
        "approval-of-a-pool",
        {"/steps/1": Insert(approval(approver={"pool": "csm-smb"}))},
        [("/steps/1/approval/approver/pool", "an approval goes to a person, not a pool")],
    ),
    (
        "approval-of-unknown-staff",
        {"/steps/1": Insert(approval(approver={"staff": "nobody"}))},
        [("/steps/1/approval/approver/staff", "unknown staff member 'nobody'")],
    ),
    (
        "approval-subject-not-a-string",
        {"/steps/1": Insert(approval(subject="record.amount"))},
        [("/steps/1/approval/subject", "this must give a string; it gives a double")],
    ),
    (
        "approval-rejected-goes-to-no-step",
        {"/steps/1": Insert(approval(on_rejected="nowhere"))},
        [("/steps/1/approval/on_rejected", "no step has id 'nowhere'")],
    ),
    (
        "approval-expired-goes-to-no-step",
        {"/steps/1": Insert(approval(on_expired="nowhere"))},
        [("/steps/1/approval/on_expired", "no step has id 'nowhere'")],
    ),
    (
        "approval-longer-than-max-wait",
        {"/steps/1": Insert(approval(timeout={"amount": 401, "unit": "days"}))},
        [("/steps/1/approval/timeout/amount", "a wait lasts at most 400 days")],
    ),
    (
        "approval-without-timeout",
        {"/steps/1": Insert(approval()), "/steps/1/approval/timeout": REMOVE},
        [("/steps/1/approval/timeout", "'timeout' is required")],
    ),
    # step references and the graph
    ("next-names-no-step", {"/steps/0/next": "nowhere"}, [("/steps/0/next", "'nowhere'")]),
    (
        "branch-case-names-no-step",
        {
            "/steps/1": Insert(
                {"id": "check", "branch": {"cases": [{"condition": "true", "next": "nowhere"}]}}
            )
        },
        [("/steps/1/branch/cases/0/next", "no step has id 'nowhere'")],
    ),
    (
        "branch-otherwise-names-no-step",
        {
            "/steps/1": Insert(
                {
                    "id": "check",
                    "branch": {
                        "cases": [{"condition": "true", "next": "done"}],
                        "otherwise": "nowhere",
                    },
                }
            )
        },
        [("/steps/1/branch/otherwise", "no step has id 'nowhere'")],
    ),
    (
        "on-timeout-names-no-step",
        {"/steps/0/wait": event_wait(on_timeout="nowhere")},
        [("/steps/0/wait/on_timeout", "no step has id 'nowhere'")],
    ),
    (
        "unreachable-step",
        {"/steps/2": Insert({"id": "orphan", "end": {}}), "/steps/1/next": "done"},
        [("/steps/2", "step 'orphan' is never reached")],
    ),
    (
        "branch-back-to-itself",
        {
            "/steps/1": Insert(
                {
                    "id": "again",
                    "branch": {"cases": [{"condition": "record.amount > 1.0", "next": "again"}]},
                }
            )
        },
        [("/steps/1", "steps again -> again loop without a wait")],
    ),
    (
        "two-steps-cycling",
        {
            "/steps/1": Insert({"id": "count", "set": {"n": "1"}}),
            "/steps/2": Insert(
                {
                    "id": "check",
                    "branch": {"cases": [{"condition": "vars.n == 1", "next": "count"}]},
                }
            ),
        },
        [("/steps/1", "steps count -> check -> count loop without a wait")],
    ),
    # waits
    (
        "wait-beyond-max-wait",
        {"/steps/0/wait/duration/amount": 401},
        [("/steps/0/wait/duration/amount", "a wait lasts at most 400 days")],
    ),
    (
        "wait-beyond-max-wait-in-hours",
        {"/steps/0/wait/duration": {"amount": 400 * 24 + 1, "unit": "hours"}},
        [("/steps/0/wait/duration/amount", "a wait lasts at most 400 days")],
    ),
    (
        "timeout-beyond-max-wait",
        {"/steps/0/wait": event_wait(timeout={"amount": 401, "unit": "days"})},
        [("/steps/0/wait/timeout/amount", "a wait lasts at most 400 days")],
    ),
    (
        "wait-longer-than-a-datetime-counts",
        {"/steps/0/wait/duration": {"amount": 10**15, "unit": "minutes"}},
        [("/steps/0/wait/duration/amount", "a wait lasts at most 400 days")],
    ),
    (
        "task-due-beyond-ten-years",
        {"/steps/1": Insert(task({"staff": "csm-ana"}))}
        | {"/steps/1/task/due": {"amount": 3_000_000, "unit": "days"}},
        [("/steps/1/task/due/amount", "at most 3653 days (ten years)")],
    ),
    (
        "task-due-beyond-what-a-datetime-counts",
        {"/steps/1": Insert(task({"staff": "csm-ana"}))}
        | {"/steps/1/task/due": {"amount": 10**20, "unit": "business_hours"}},
        [("/steps/1/task/due/amount", "at most 3653 days (ten years)")],
    ),
    (
        "wait-of-nothing",
        {"/steps/0/wait/duration/amount": 0},
        [("/steps/0/wait/duration/amount", "must be at least 1")],
    ),
    (
        "unknown-duration-unit",
        {"/steps/0/wait/duration/unit": "weeks"},
        [("/steps/0/wait/duration/unit", "unknown unit 'weeks'")],
    ),
    (
        "wait-for-an-event-without-timeout",
        {"/steps/0/wait": {"event": {"types": ["updated"]}}},
        [("/steps/0/wait/timeout", "a wait for an event needs a timeout")],
    ),
    (
        "timeout-on-a-duration-wait",
        {"/steps/0/wait/timeout": {"amount": 1, "unit": "days"}},
        [("/steps/0/wait", "timeout and on_timeout belong to a wait for an event")],
    ),
    (
        "on-timeout-on-a-duration-wait",
        {"/steps/0/wait/on_timeout": "done"},
        [("/steps/0/wait", "timeout and on_timeout belong to a wait for an event")],
    ),
    (
        "wait-of-two-kinds",
        {"/steps/0/wait/until": "now"},
        [("/steps/0/wait", "a wait has exactly one of duration, until, event")],
    ),
    (
        "wait-event-of-unknown-type",
        {"/steps/0/wait": event_wait(event={"types": ["edited"]})},
        [("/steps/0/wait/event/types/0", "unknown event type 'edited'")],
    ),
    # people
    (
        "unknown-staff",
        {"/steps/1/email/to": {"staff": "nobody"}},
        [("/steps/1/email/to/staff", "unknown staff member 'nobody'")],
    ),
    (
        "unknown-pool",
        {"/steps/1": task({"pool": "nopool"})},
        [("/steps/1/task/assignee/pool", "unknown pool 'nopool'")],
    ),
    (
        "email-to-a-pool",
        {"/steps/1/email/to": {"pool": "csm-smb"}},
        [("/steps/1/email/to/pool", "an email goes to a person, not a pool")],
    ),
    (
        "manager-of-a-pool",
        {"/steps/1": task({"pool": "csm-smb", "manager": True})},
        [("/steps/1/task/assignee/manager", "a pool has no manager")],
    ),
    (
        "owner-without-the-owner-field",
        {"/fields/owner_id": REMOVE},
        [("/steps/1/email/to/owner", "'owner_id' (owner_field)")],
    ),
    (
        "owner-field-renamed-but-undeclared",
        {"/owner_field": "rep_id"},
        [("/steps/1/email/to/owner", "'rep_id' (owner_field)")],
    ),
    (
        "email-to-an-undeclared-field",
        {"/steps/1/email/to": {"field": "email"}},
        [("/steps/1/email/to/field", "unknown field 'email'")],
    ),
    (
        "person-of-two-kinds",
        {"/steps/1/email/to": {"owner": True, "staff": "csm-ana"}},
        [("/steps/1/email/to", "name exactly one of staff, owner, field, pool")],
    ),
    # templates
    (
        "template-syntax-error-in-subject",
        {"/steps/1/email/subject": "{{ record.name "},
        [("/steps/1/email/subject", "template: line 1: unexpected end of template")],
    ),
    (
        "template-syntax-error-in-body",
        {"/steps/1/email/body": "line one\n{% if %}"},
        [("/steps/1/email/body", "template: line 2:")],
    ),
    (
        "template-unknown-name-in-body",
        {"/steps/1/email/body": "Dear {{ foo }}"},
        [("/steps/1/email/body", "unknown name 'foo'")],
    ),
    (
        "template-unknown-names-in-task-title",
        {"/steps/1": task({"owner": True}, title="{{ foo }} and {{ bar }}")},
        [
            ("/steps/1/task/title", "unknown name 'bar'"),
            ("/steps/1/task/title", "unknown name 'foo'"),
        ],
    ),
    # http calls
    (
        "http-url-of-another-scheme",
        {"/steps/1": Insert(http(url="ftp://files.example.com/deals"))},
        [("/steps/1/http/url", "an http:// or https:// URL with a host")],
    ),
    (
        "http-url-without-a-host",
        {"/steps/1": Insert(http(url="https:///deals"))},
        [("/steps/1/http/url", "an http:// or https:// URL with a host")],
    ),
    (
        "http-url-relative",
        {"/steps/1": Insert(http(url="/hooks/deals"))},
        [("/steps/1/http/url", "an http:// or https:// URL with a host")],
    ),
    (
        "http-url-with-credentials",
        {"/steps/1": Insert(http(url="https://ana:s3cret@hooks.example.com/deals"))},
        [("/steps/1/http/url", "no credentials in the URL")],
    ),
    (
        "http-body-of-an-undeclared-field",
        {"/steps/1": Insert(http(body={"stage": "record.stage"}))},
        [("/steps/1/http/body/stage", "CEL: record.stage: unknown field 'stage'")],
    ),
    (
        "http-on-failure-of-no-step",
        {"/steps/1": Insert(http(on_failure="nowhere"))},
        [("/steps/1/http/on_failure", "no step has id 'nowhere'")],
    ),
    (
        "http-save-as-not-a-name",
        {"/steps/1": Insert(http(save_as="Status"))},
        [("/steps/1/http/save_as", "a variable name is lower-case")],
    ),
    (
        "http-without-url",
        {"/steps/1": Insert({"id": "notify", "http": {"body": {}}})},
        [("/steps/1/http/url", "'url' is required")],
    ),
    # enrollment
    (
        "reenrollment-after-beyond-ten-years",
        {"/enrollment": {"reenroll": True, "after": {"amount": 100_000, "unit": "hours"}}},
        [("/enrollment/after/amount", "at most 3653 days (ten years)")],
    ),
    (
        "enrollment-after-without-reenroll",
        {"/enrollment": {"after": {"amount": 30, "unit": "days"}}},
        [("/enrollment/after", "only with reenroll: true")],
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [(changes, expected) for _, changes, expected in MISTAKES],
    ids=[name for name, _, _ in MISTAKES],
)
def test_each_kind_of_mistake_is_refused_at_its_json_pointer(
    changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert_refused(edited(changes), expected)


def test_the_error_text_names_each_pointer_and_every_mistake_is_reported_at_once() -> None:
    doc = edited(
        {
            "/id": "Big-Deal",
            "/calendar": "emea",
            "/trigger/types/0": "edited",
            "/steps/0/wait/duration/amount": 401,
            "/steps/1/email/body": "{{ foo }}",
        }
    )

    with pytest.raises(DefinitionError) as caught:
        parse_definition(doc, POLICY)

    pointers = [problem.pointer for problem in caught.value.errors]
    assert pointers == [
        "/id",
        "/calendar",
        "/trigger/types/0",
        "/steps/0/wait/duration/amount",
        "/steps/1/email/body",
    ]
    text = str(caught.value)
    for pointer in pointers:
        assert f"{pointer}: " in text
    assert "unknown calendar 'emea'" in text
    assert text.count("; ") >= len(pointers) - 1


def test_several_shape_mistakes_are_reported_together() -> None:
    doc = edited({"/colour": "red", "/steps/0/wait/duration/amount": "x", "/name": REMOVE})

    assert sorted(pointer for pointer, _ in problems(doc)) == [
        "/colour",
        "/name",
        "/steps/0/wait/duration/amount",
    ]


def test_a_problem_of_the_whole_document_shows_as_slash_in_the_error_text() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_document_text("- a\n- b\n", "application/yaml")

    assert str(caught.value) == "/: an automation is a mapping of keys to values"


def test_a_duplicate_step_id_is_the_only_problem_reported() -> None:
    assert_refused(
        edited({"/steps/2/id": "tell_owner"}),
        [("/steps/2/id", "step id 'tell_owner' is used twice")],
    )


def test_a_field_name_inside_a_string_literal_is_not_a_reference() -> None:
    doc = edited({"/trigger/condition": 'record.name != "see record.nope"'})

    assert isinstance(parse_definition(doc, POLICY), AutomationDefinition)


def test_a_pointer_to_a_key_with_a_slash_is_escaped() -> None:
    doc = document()
    doc["fields"]["contact/email"] = "string"

    assert [pointer for pointer, _ in problems(doc)] == ["/fields/contact~1email"]


@pytest.mark.parametrize(
    "duration",
    [{"amount": 9000, "unit": "business_hours"}, {"amount": 390, "unit": "business_days"}],
    ids=["business-hours", "business-days"],
)
def test_a_business_time_wait_longer_than_max_wait_is_refused(duration: dict[str, Any]) -> None:
    assert [pointer for pointer, _ in problems(edited({"/steps/0/wait/duration": duration}))] == [
        "/steps/0/wait/duration/amount"
    ]


# --- the published schema -------------------------------------------------------------------------


def test_the_schema_describes_an_automation_and_forbids_unknown_keys() -> None:
    schema = definition_schema()

    json.dumps(schema)  # publishable as it is
    assert schema["title"] == "crmflow automation"
    assert schema["type"] == "object"
    assert {"steps", "trigger", "fields", "enrollment", "goal"} <= set(schema["properties"])
    assert set(schema["required"]) == {"id", "name", "object", "trigger", "steps"}
    assert schema["additionalProperties"] is False
    step = schema["$defs"]["Step"]
    assert step["additionalProperties"] is False
    assert set(step["properties"]) == {
        "id",
        "email",
        "task",
        "wait",
        "branch",
        "set",
        "start",
        "approval",
        "http",
        "end",
        "next",
    }
    assert step["required"] == ["id"]
    for name, definition in schema["$defs"].items():
        assert definition.get("additionalProperties") is False, name


# --- reading the document text --------------------------------------------------------------------


def test_a_yaml_document_is_read_as_a_mapping() -> None:
    text = EXAMPLES[0].read_text()

    doc = parse_document_text(text, "application/yaml")

    assert doc == yaml.safe_load(text)
    assert isinstance(parse_definition(doc, POLICY), AutomationDefinition)


def test_a_json_document_is_read_as_a_mapping() -> None:
    doc = parse_document_text(json.dumps(document()), "application/json; charset=utf-8")

    assert doc == document()
    assert parse_definition(doc, POLICY).id == "big-deal-follow-up"


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        ("id: [unclosed\n", "application/yaml"),
        ('{"id": ', "application/json"),
        ("id: big-deal\n", "application/json"),
    ],
    ids=["yaml", "json", "yaml-sent-as-json"],
)
def test_text_that_does_not_parse_is_one_problem_of_the_whole_document(
    text: str, content_type: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_document_text(text, content_type)

    [problem] = caught.value.errors
    assert problem.pointer == ""
    assert problem.message.startswith("not valid YAML or JSON: ")


@pytest.mark.parametrize(
    ("text", "content_type"),
    [("- id: a\n- id: b\n", "application/yaml"), ("[1, 2]", "application/json"), ("", "text/yaml")],
    ids=["yaml-list", "json-list", "empty"],
)
def test_a_document_that_is_not_a_mapping_is_refused(text: str, content_type: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_document_text(text, content_type)

    assert [(p.pointer, p.message) for p in caught.value.errors] == [
        ("", "an automation is a mapping of keys to values")
    ]


def test_a_run_is_for_its_records_customer_when_the_record_names_one() -> None:
    assert customer_of("t-5", {"customer_id": "c-42", "subject": "Login"}) == "c-42"
    assert customer_of("c-42", {"name": "Initech"}) == "c-42"  # a customer's own record
    assert customer_of("d-9", {"customer_id": ""}) == "d-9"
    assert customer_of("d-9", {"customer_id": 42}) == "d-9"  # not a business key
    assert customer_of("d-9", {"customer_id": "c 42; drop"}) == "d-9"
    assert customer_of("d-9", {"customer_id": "c" * 101}) == "d-9"


def test_a_reenrolment_pause_is_counted_as_it_runs_in_calendar_time() -> None:
    """30,000 business hours pause 1,250 calendar days between runs (``calendar_length``),
    within ten years though the business time they name is longer."""
    pause = {"amount": 30_000, "unit": "business_hours"}
    doc = edited({"/enrollment": {"reenroll": True, "after": pause}})
    assert parse_definition(doc, POLICY).enrollment.after is not None


def test_an_http_step_to_an_address_inside_the_network_is_refused_unless_allowlisted() -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.7/", "http://[::1]/"):
        doc = edited({"/steps/1": Insert(http(url=url))})
        with pytest.raises(DefinitionError) as refused:
            parse_definition(doc, POLICY, allowed_hosts=[])
        [problem] = refused.value.errors
        assert problem.pointer == "/steps/1/http/url"
        assert "inside the network" in problem.message
    doc = edited({"/steps/1": Insert(http(url="http://10.0.0.7:8080/hooks"))})
    assert parse_definition(doc, POLICY, allowed_hosts=["10.0.0.7"]).step("notify").http
    # A host name is resolved, and refused, at call time (activities.outbound).
    assert parse_definition(edited({"/steps/1": Insert(http())}), POLICY, allowed_hosts=[])
