"""The attention watch: tell the operator when the needs-attention list grows.

A Temporal Schedule (``worker.schedules``) starts this workflow every few
minutes. It asks the ``check_attention`` activity what needs attention now
and what of it is new since the previous look (that activity also emits an
``attention.raised`` webhook event per new item to its tenant's endpoints),
then emails the operator the new items, once per look: the email's key is
the scheduled run's id.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from workflows.attention_types import (
        ATTENTION_WATCH,
        CHECK_ATTENTION,
        AttentionCheck,
        AttentionChecked,
        AttentionWatch,
    )
    from workflows.contracts import SEND_EMAIL, EmailReceipt, EmailRequest
    from workflows.retries import EMAIL_RETRY, RECORD_RETRY

#: What its recorded histories are named after (tests/histories/attention-*.json).
PROCESS_NAME = "attention"

OPERATOR_EMAIL_SUBJECT = "{{ raised | length }} new item(s) need attention in crmflow"
OPERATOR_EMAIL_BODY = (
    "{{ raised | length }} new item(s) joined the needs-attention list "
    "({{ open_items }} open in all):\n\n"
    "{% for item in raised %}- {{ item.kind }}: {{ item.subject }}: {{ item.problem }}"
    "{% if item.process_id %} ({{ item.process_id }}){% endif %}"
    "{% if item.actions %}; can be: {{ item.actions | join(', ') }}{% endif %}\n{% endfor %}\n"
    "See them all in the console at /console/attention or with GET /v1/attention.\n"
)


@workflow.defn(name=ATTENTION_WATCH, versioning_behavior=VersioningBehavior.PINNED)
class AttentionWatchWorkflow:
    """One look at the needs-attention list, and an email about what is new."""

    @workflow.run
    async def run(self, watch: AttentionWatch) -> AttentionChecked:
        checked: AttentionChecked = await workflow.execute_activity(
            CHECK_ATTENTION,
            AttentionCheck(watch_id=workflow.info().workflow_id),
            result_type=AttentionChecked,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RECORD_RETRY,
            summary="check what needs attention",
        )
        if checked.raised and watch.operator_email:
            await workflow.execute_activity(
                SEND_EMAIL,
                EmailRequest(
                    key=f"{workflow.info().workflow_id}/attention",
                    process_id=workflow.info().workflow_id,
                    to=watch.operator_email,
                    template="attention_raised",
                    context={
                        "open_items": checked.open_items,
                        "raised": [
                            {
                                "kind": item.kind,
                                "subject": item.subject,
                                "problem": item.problem,
                                "process_id": item.process_id,
                                "actions": item.actions,
                            }
                            for item in checked.raised
                        ],
                    },
                    subject=OPERATOR_EMAIL_SUBJECT,
                    body=OPERATOR_EMAIL_BODY,
                ),
                result_type=EmailReceipt,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=EMAIL_RETRY,
                summary="email the operator",
            )
        return checked
