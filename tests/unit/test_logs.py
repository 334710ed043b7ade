"""JSON log lines carry the workflow id and run id, from activities and from the API."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from typing import Any

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from crm.platform.logs import JsonFormatter, bind_process


def capture(logger: logging.Logger) -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return out, handler


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_activity_log_lines_carry_workflow_and_run_id() -> None:
    @activity.defn(name="greet")
    async def greet() -> None:
        activity.logger.info("hello from %s", "an activity")

    out, handler = capture(logging.getLogger("temporalio.activity"))
    try:
        await ActivityEnvironment().run(greet)
    finally:
        logging.getLogger("temporalio.activity").removeHandler(handler)
    [line] = lines(out)
    assert line["workflow_id"] == "test"
    assert line["run_id"] == "test-run"
    assert line["activity_type"] == "unknown"
    assert line["message"].startswith("hello from an activity")
    assert line["level"] == "info"


def test_api_lines_carry_the_bound_process() -> None:
    logger = logging.getLogger("crmflow.test")
    out, handler = capture(logger)

    def request() -> None:
        bind_process("onboarding-c-42", "run-1")
        logger.info("started")

    try:
        contextvars.copy_context().run(request)
        logger.info("outside any request")
    finally:
        logger.removeHandler(handler)
    inside, outside = lines(out)
    assert (inside["workflow_id"], inside["run_id"]) == ("onboarding-c-42", "run-1")
    assert "workflow_id" not in outside


def test_errors_keep_their_traceback_in_one_line() -> None:
    logger = logging.getLogger("crmflow.test.errors")
    out, handler = capture(logger)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    [line] = lines(out)
    assert "ValueError: boom" in line["error"]
