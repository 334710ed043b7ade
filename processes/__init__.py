"""Every crmflow process, registered once: the API, the worker and the CLI read ``PROCESSES``.

A new process is a workflow in ``workflows/``, a module here with its
``ProcessDescriptor``, and one line below.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

from processes.approvals import APPROVAL
from processes.leads import LEAD
from processes.onboarding import ONBOARDING
from processes.registry import ProcessDescriptor
from processes.renewals import RENEWAL
from processes.tickets import SLA

PROCESSES: tuple[ProcessDescriptor, ...] = (ONBOARDING, SLA, RENEWAL, LEAD, APPROVAL)


def process_named(name: str | None) -> ProcessDescriptor | None:
    """The process whose ``CrmProcess`` is ``name``, or None."""
    return next((process for process in PROCESSES if process.name == name), None)


def workflows() -> list[type]:
    """The workflow classes a worker registers."""
    return [process.workflow for process in PROCESSES]


def search_attributes() -> list[SearchAttributeKey[str]]:
    """The custom search attributes the runs set, which every Temporal server must know."""
    keys = {key.name: key for process in PROCESSES for key in process.search_attributes}
    return list(keys.values())
