"""``/v1/attention``: what needs a person now, for support staff and operators."""

from __future__ import annotations

from fastapi import APIRouter

from api.attention import (
    FAILING_ATTEMPT,
    MAX_RUNS_DESCRIBED,
    AttentionItem,
    needs_attention,
)
from api.auth import AdminOrSupport
from api.deps import ContextDep, DatabaseDep, TemporalDep

router = APIRouter(prefix="/v1/attention", tags=["attention"])


@router.get(
    "",
    response_model=list[AttentionItem],
    description=(
        "What needs attention in the caller's tenant, oldest first: open tasks past their "
        "due time (`task_overdue`), running approvals past their step's timeout "
        f"(`approval_overdue`), pending activities on attempt {FAILING_ATTEMPT} or later "
        f"(`activity_failing`; the {MAX_RUNS_DESCRIBED} newest running runs are looked at) "
        "and automation steps that failed in the last 7 days (`automation_step_failed`). "
        "`actions` names what can be done: `complete` (POST /v1/tasks/{id}/complete), "
        "`decide` (POST /v1/approvals/{id}/decision), `cancel` "
        "(POST /v1/processes/{id}/cancel), `retry` (the activity retries on its own; fix "
        "the cause or reset the run in the Temporal Web UI), `enroll` (enrol the record "
        "again). An item of kind `incomplete` says where a bound cut the look short."
    ),
)
async def get_attention(
    client: TemporalDep, database: DatabaseDep, context: ContextDep, principal: AdminOrSupport
) -> list[AttentionItem]:
    return await needs_attention(client, database, context.settings, principal)
