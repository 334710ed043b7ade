"""Recorded histories replay against the current workflow code.

A change to a workflow that would break runs already in flight (a reordered
activity, a removed timer, a new step without ``workflow.patched``) makes the
replay fail here with a non-determinism error, before it reaches a worker.
Record with ``python -m tests.histories.record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker.main import WORKFLOWS

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_every_process_has_recorded_histories() -> None:
    recorded = {path.name.split("-")[0] for path in HISTORIES}
    assert "onboarding" in recorded


RECORDED = {path.stem: json.loads(path.read_text()) for path in HISTORIES}


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_history_replays_on_the_current_code(name: str) -> None:
    history = WorkflowHistory.from_json(name, RECORDED[name])
    result = await Replayer(workflows=list(WORKFLOWS)).replay_workflow(history)
    assert result.replay_failure is None
