"""Every crmflow process, registered once: the API, the worker and the CLI read ``PROCESSES``.

A new process is a workflow in ``workflows/``, a module here with its
``ProcessDescriptor``, and one line below. Users' automations
(``workflows.automation``) are defined as data, not here; the worker runs
their interpreter beside the processes.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

from processes.approvals import APPROVAL
from processes.leads import LEAD
from processes.onboarding import ONBOARDING
from processes.registry import ProcessDescriptor
from processes.renewals import RENEWAL
from processes.tickets import SLA
from workflows.attention_watch import AttentionWatchWorkflow
from workflows.automation import AutomationWorkflow
from workflows.common import (
    AUTOMATION_ID,
    AUTOMATION_VERSION,
    PROCESS,
    RECORD_ID,
    STAGE,
    TENANT,
)
from workflows.digest import DailyDigestWorkflow
from workflows.webhook_dispatch import WebhookDispatchWorkflow

PROCESSES: tuple[ProcessDescriptor, ...] = (ONBOARDING, SLA, RENEWAL, LEAD, APPROVAL)


def process_named(name: str | None) -> ProcessDescriptor | None:
    """The process whose ``CrmProcess`` is ``name``, or None."""
    return next((process for process in PROCESSES if process.name == name), None)


def workflows() -> list[type]:
    """The workflow classes a worker registers: the processes', the automations', the
    webhook deliveries', the attention watch's and the daily digests'."""
    return [
        *(process.workflow for process in PROCESSES),
        AutomationWorkflow,
        WebhookDispatchWorkflow,
        AttentionWatchWorkflow,
        DailyDigestWorkflow,
    ]


def search_attributes() -> list[SearchAttributeKey[str]]:
    """The custom search attributes the runs set, which every Temporal server must know."""
    keys = {key.name: key for process in PROCESSES for key in process.search_attributes}
    keys |= {
        key.name: key
        for key in (PROCESS, STAGE, AUTOMATION_ID, AUTOMATION_VERSION, RECORD_ID, TENANT)
    }
    return list(keys.values())
