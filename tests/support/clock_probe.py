"""A workflow that reads the wall clock, as workflow code must not (see test_sandbox.py).

In a module of its own: the sandbox loads a workflow's module inside it, and a
test module's imports (pytest's assertion rewriting) are not for a sandbox.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow


@workflow.defn
class ReadsTheWallClock:
    @workflow.run
    async def run(self) -> str:
        return datetime.now(UTC).isoformat()  # wrong: workflow.now() replays, this does not
