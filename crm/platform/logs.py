"""Structured logs: one JSON object per line, with the workflow id and run id.

Activities log through ``activity.logger`` and workflows through
``workflow.logger``; the SDK puts the run's identity on each record
(``temporal_activity`` / ``temporal_workflow``), and the formatter lifts it
into top-level ``workflow_id`` and ``run_id`` fields. The API binds the
process it is working on with ``bind_process`` so its lines carry the same
fields. ``CRMFLOW_LOG_FORMAT=text`` gives plain lines for reading by eye.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from temporalio import activity, workflow

_process: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "crmflow_process", default=None
)

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "crmflow_principal", default=None
)

#: Fields the SDK puts on records, lifted to the top level under these names.
_TEMPORAL_FIELDS = {
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "attempt": "attempt",
    "task_queue": "task_queue",
}


def bind_process(process_id: str, run_id: str | None = None) -> None:
    """Put ``workflow_id`` (and ``run_id``) on every log line of the current request."""
    fields = {"workflow_id": process_id}
    if run_id:
        fields["run_id"] = run_id
    _process.set(fields)


def bind_principal(principal_id: str) -> None:
    """Put the authenticated caller's id on every log line of the current request."""
    _principal.set(principal_id)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_process.get() or {})
        principal = _principal.get()
        if principal is not None:
            entry["principal"] = principal
        for source in ("temporal_activity", "temporal_workflow"):
            details = getattr(record, source, None)
            if isinstance(details, dict):
                for name, field in _TEMPORAL_FIELDS.items():
                    if name in details:
                        entry[field] = details[name]
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: Literal["json", "text"] = "json", level: str = "INFO") -> None:
    """Send every log line to stderr in ``log_format``; call once at process start."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        # The identity is in the JSON fields; do not repeat it inside the message.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
