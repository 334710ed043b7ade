"""The running stack a workflow test works against, as one value."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from devstack.mailsink import MailSink
from worker.main import running_worker


@dataclasses.dataclass(frozen=True)
class Stack:
    """A Temporal server, this test's settings and database, and the SMTP sink.

    ``settings`` point at this test's own task queue and database file; the
    SMTP sink is shared by the session, so read mail by address or process id.
    """

    env: WorkflowEnvironment
    settings: Settings
    policy: Policy
    database: Database
    mail_sink: MailSink

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue

    @property
    def maildir(self) -> Path:
        return self.mail_sink.maildir

    def worker(self, **settings: Any) -> AbstractAsyncContextManager[Worker]:
        """The production worker on this test's queue, with ``settings`` changed if given.

        Tests that break a dependency (``smtp_port=free_port()``) start their
        own worker this way instead of the ``stack`` fixture's.
        """
        changed = self.settings.model_copy(update=settings)
        return running_worker(self.client, changed, self.policy, self.database)
