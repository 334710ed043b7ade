"""What the daily digest workflow and its activity exchange (``workflows.digest``)."""

from dataclasses import dataclass, field
from datetime import datetime

#: The activity that gathers what is waiting on one staff member.
GATHER_DIGEST = "gather_digest"
#: The workflow that emails one staff member their open work every morning.
DAILY_DIGEST = "DailyDigestWorkflow"


@dataclass
class DigestInput:
    """Whose digest, at what time of day (``HH:MM``) in which IANA zone."""

    staff_id: str
    timezone: str = "UTC"
    at: str = "08:00"


@dataclass
class DigestRequest:
    """Gather ``staff_id``'s work for the digest of ``day`` (their local date) as it stands
    at ``at`` (what is overdue then)."""

    staff_id: str
    day: str
    at: datetime


@dataclass
class DigestContent:
    """What a digest says; nothing to say when ``lines`` is empty."""

    email: str | None
    name: str
    #: The staff member's zone in the policy now: the next morning is counted in it.
    timezone: str = "UTC"
    #: The time of day digests go out at now (None: as before).
    at: str | None = None
    #: No more digests: the staff member left the policy, or digests were turned off.
    stop: bool = False
    open_tasks: int = 0
    overdue_tasks: int = 0
    approvals: int = 0
    unread: int = 0
    lines: list[str] = field(default_factory=list)
