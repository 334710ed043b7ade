"""Recorded histories replay against the current workflow code.

A change to a workflow that would break runs already in flight (a reordered
activity, a removed timer, a new step without ``workflow.patched``) makes the
replay fail here with a non-determinism error, before it reaches a worker.
Record with ``python -m tests.histories.record``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner

from worker.main import WORKFLOWS
from worker.runners import SANDBOXED_RUNNER

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))

#: Every process the worker runs (and the webhooks' dispatch); each needs recordings of
#: its main paths.
PROCESSES = {
    "onboarding",
    "sla",
    "approval",
    "renewal",
    "lead",
    "automation",
    "webhooks",
    "attention",
    "digest",
}


def test_every_process_has_recorded_histories() -> None:
    recorded = {path.name.split("-")[0] for path in HISTORIES}
    assert recorded >= PROCESSES, f"no recorded history of {sorted(PROCESSES - recorded)}"
    # A process added to the worker needs its recordings (and a place here) too.
    assert {sys.modules[w.__module__].PROCESS_NAME for w in WORKFLOWS} == PROCESSES


RECORDED = {path.stem: json.loads(path.read_text()) for path in HISTORIES}


#: The sandbox of the tests, and the plain runner production workers use by default.
RUNNERS: dict[str, WorkflowRunner] = {
    "sandboxed": SANDBOXED_RUNNER,
    "unsandboxed": UnsandboxedWorkflowRunner(),
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_history_replays_on_the_current_code(name: str, runner: str) -> None:
    history = WorkflowHistory.from_json(name, RECORDED[name])
    result = await Replayer(
        workflows=list(WORKFLOWS), workflow_runner=RUNNERS[runner]
    ).replay_workflow(history)
    assert result.replay_failure is None
