"""The daily digest: every morning, a staff member's open and overdue work by email.

One run per staff member sleeps until the next ``at`` o'clock in their zone
(08:00 on the wall, winter and summer: ``crm.domain.daily``; the zone the
policy gives them and the time the settings give, learned afresh each
morning), gathers what is
waiting on them (``gather_digest``) and emails it, once per local day (the
email's key is the run's id and the day), only when there is something to
say. It ends when the staff member leaves the policy or digests are turned
off. After a month of mornings it continues as new, so a run that lives for
years keeps a short history.
"""

from datetime import time, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from crm.domain.daily import local_date, next_local_time
    from workflows.contracts import SEND_EMAIL, EmailReceipt, EmailRequest
    from workflows.digest_types import (
        DAILY_DIGEST,
        GATHER_DIGEST,
        DigestContent,
        DigestInput,
        DigestRequest,
    )
    from workflows.retries import EMAIL_RETRY, RECORD_RETRY

#: What its recorded histories are named after (tests/histories/digest-*.json).
PROCESS_NAME = "digest"
#: Mornings one run covers before it continues as new.
MORNINGS_PER_RUN = 30

DIGEST_SUBJECT = (
    "Your work for {{ day }}: {{ open_tasks }} open task(s)"
    "{% if overdue_tasks %}, {{ overdue_tasks }} overdue{% endif %}"
    "{% if approvals %}, {{ approvals }} to decide{% endif %}"
)
DIGEST_BODY = (
    "Good morning {{ name }},\n\n"
    "{% for line in lines %}- {{ line }}\n{% endfor %}\n"
    "Act on them in the console: /console/inbox\n"
)


@workflow.defn(name=DAILY_DIGEST, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class DailyDigestWorkflow:
    """A staff member's mornings: sleep until ``at`` in their zone, then email their work."""

    @workflow.run
    async def run(self, digest: DigestInput) -> None:
        at = time.fromisoformat(digest.at)
        for _ in range(MORNINGS_PER_RUN):
            due = next_local_time(workflow.now(), digest.timezone, at)
            await workflow.sleep(
                due - workflow.now(), summary=f"until {digest.at} in {digest.timezone}"
            )
            day = local_date(due, digest.timezone).isoformat()
            try:
                content = await self._morning(digest, day)
            except ActivityError as err:  # tomorrow's digest still comes
                if is_cancelled_exception(err):
                    raise
                workflow.logger.warning("no digest for %s on %s: %s", digest.staff_id, day, err)
                continue
            if content.stop:
                return
            digest.timezone = content.timezone
            if content.at is not None and content.at != digest.at:
                digest.at, at = content.at, time.fromisoformat(content.at)
        workflow.continue_as_new(digest)

    async def _morning(self, digest: DigestInput, day: str) -> DigestContent:
        """Gather the day's work and email it, if there is any; what was gathered, with the
        staff member's zone and digest time now (the policy or the settings may have moved
        them, or ended their digests)."""
        content: DigestContent = await workflow.execute_activity(
            GATHER_DIGEST,
            DigestRequest(staff_id=digest.staff_id, day=day, at=workflow.now()),
            result_type=DigestContent,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=timedelta(hours=2),
            retry_policy=RECORD_RETRY,
            summary=f"gather {digest.staff_id}'s work",
        )
        if not (content.email and content.lines) or content.stop:
            return content
        await workflow.execute_activity(
            SEND_EMAIL,
            EmailRequest(
                key=f"{workflow.info().workflow_id}/{day}",
                process_id=workflow.info().workflow_id,
                to=content.email,
                template="daily_digest",
                context={
                    "day": day,
                    "name": content.name,
                    "open_tasks": content.open_tasks,
                    "overdue_tasks": content.overdue_tasks,
                    "approvals": content.approvals,
                    "lines": content.lines,
                },
                subject=DIGEST_SUBJECT,
                body=DIGEST_BODY,
            ),
            result_type=EmailReceipt,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(hours=2),
            retry_policy=EMAIL_RETRY,
            summary="email the digest",
        )
        return content
