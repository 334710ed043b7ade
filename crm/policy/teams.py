"""Who works with whom: the people a task may be handed to, and a manager's team.

A task moves between colleagues: the members of any pool its assignee is in,
and the people who share the assignee's manager (their team), or to that
manager. A manager's team is everyone who reports to them.
"""

from __future__ import annotations

from crm.policy import Policy


def team_of(policy: Policy, manager_id: str) -> tuple[str, ...]:
    """The staff who report to ``manager_id``, in policy order."""
    return tuple(member.id for member in policy.staff if member.manager_id == manager_id)


def colleagues_of(policy: Policy, staff_id: str) -> tuple[str, ...]:
    """Whom ``staff_id``'s work may be handed to: their pools' members, their team and their
    manager, in policy order, never themselves."""
    manager = next((m.manager_id for m in policy.staff if m.id == staff_id), None)
    near = {other for members in policy.pools.values() if staff_id in members for other in members}
    if manager is not None:
        near |= {manager, *team_of(policy, manager)}
    return tuple(m.id for m in policy.staff if m.id in near and m.id != staff_id)
