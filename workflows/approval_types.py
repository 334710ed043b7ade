"""The data an approval exchanges: its input, a decision, its result.

Kept apart from the workflow so that every process (and the API) can import
them, and so the workflow sandbox passes them through: their ``datetime``
fields must be the real ``datetime`` class for the payload converter.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

DECISIONS = ("approve", "reject")


@dataclass
class Approver:
    """One step of the chain: who decides, within how long, and who may stand in."""

    approver_id: str
    name: str
    email: str
    timeout_seconds: int
    delegate_id: str | None = None
    #: The instant the step ends, when the requester counted it (an automation, in business
    #: time; one already past when the approver is asked ends it at once); None:
    #: ``timeout_seconds`` after the approver is asked.
    decide_by: datetime | None = None


@dataclass
class ApprovalInput:
    """What needs approving (``subject``, one line), who asks, and the approver chain."""

    subject_id: str
    subject: str
    requester_id: str
    chain: list[Approver]
    customer_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Why the request cannot run: a missing name, no approver, a timeout under 1 s."""
        problems = [
            f"{name} is required"
            for name in ("subject_id", "subject", "requester_id")
            if not str(getattr(self, name)).strip()
        ]
        if not self.chain:
            problems.append("chain must name at least one approver")
        for approver in self.chain:
            if approver.timeout_seconds < 1:
                problems.append(f"approver {approver.approver_id!r}: timeout_seconds must be >= 1")
        return problems


@dataclass
class ApprovalDecision:
    """A decision: ``approve`` or ``reject`` by ``decided_by`` (approver or delegate)."""

    decided_by: str
    decision: str
    comment: str = ""


@dataclass
class ApprovalResult:
    """How the approval ended: ``approved``, ``rejected`` or ``expired``.

    ``decided_by`` is None for an expired request; ``on_behalf_of`` names the
    approver a delegate decided for.
    """

    approval_id: str
    outcome: str
    decided_by: str | None
    on_behalf_of: str | None
    decided_at: datetime
    comment: str
    step: int
    escalations: list[str] = field(default_factory=list)


def approval_id(subject_id: str, tenant: str | None = None) -> str:
    """The workflow id of the approval of ``subject_id``, its business key, and ``@{tenant}``
    for an approval a tenant's run asks, so two tenants' subjects of one id are two approvals."""
    return f"approval-{subject_id}@{tenant}" if tenant else f"approval-{subject_id}"
