"""Validating a task step that waits for its task to be done, or waits in a pool to be claimed."""

from __future__ import annotations

from typing import Any

from crm.automations.validation import parse_definition
from tests.unit.test_automation_validation import POLICY, document, problems


def with_task(**task: Any) -> dict[str, Any]:
    doc = document()
    doc["steps"][0] = {
        "id": "call",
        "task": {
            "assignee": {"owner": True},
            "title": "Call about {{ record.name }}",
            "due": {"amount": 4, "unit": "hours"},
            **task,
        },
    }
    return doc


def test_a_waited_task_goes_to_on_timeout_or_on() -> None:
    definition = parse_definition(
        with_task(wait_for_done={"amount": 1, "unit": "business_days"}, on_timeout="done"),
        POLICY,
    )

    call = definition.step("call")
    assert call.waits
    assert definition.successors(call) == ["tell_owner", "done"]


def test_on_timeout_needs_a_wait_and_a_known_step() -> None:
    assert problems(with_task(on_timeout="done")) == [
        ("/steps/0/task/on_timeout", "on_timeout belongs to a task waited for")
    ]
    found = problems(with_task(wait_for_done={"amount": 1, "unit": "days"}, on_timeout="nowhere"))
    assert [pointer for pointer, _ in found] == ["/steps/0/task/on_timeout"]


def test_a_task_wait_is_bounded_like_any_wait() -> None:
    found = problems(with_task(wait_for_done={"amount": 500, "unit": "days"}))

    assert found == [("/steps/0/task/wait_for_done/amount", "a wait lasts at most 400 days")]


def test_a_loop_through_a_waited_task_does_not_spin() -> None:
    doc = with_task(wait_for_done={"amount": 1, "unit": "days"}, on_timeout="call")

    definition = parse_definition(doc, POLICY)

    assert definition.step("call").task is not None


def test_a_task_left_in_a_pool_is_claimed_and_only_a_pools_is() -> None:
    definition = parse_definition(with_task(assignee={"pool": "csm-smb", "claim": True}), POLICY)
    call = definition.step("call")
    assert call.task is not None and call.task.assignee.describe() == "pool csm-smb, to claim"

    assert problems(with_task(assignee={"owner": True, "claim": True})) == [
        ("/steps/0/task/assignee/claim", "only a pool's task is claimed")
    ]
