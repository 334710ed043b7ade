"""What a process hears of the tasks it created, as people act on them."""

from dataclasses import dataclass

#: The signal every process takes when a person completes, reassigns or claims one of its
#: tasks.
TASK_CHANGED = "task_changed"
#: The kinds of task an approval step gives its approver begin with it (``approval_<step>``).
APPROVAL_TASKS = "approval_"
#: What a task waiting in a pool for a member to claim it has for its assignee.
POOL_PREFIX = "pool:"


def pool_assignee(pool: str) -> str:
    """The assignee of a task left in ``pool`` for one of its members to claim."""
    return POOL_PREFIX + pool


@dataclass
class TaskChange:
    """A person acted on task ``task_id`` of kind ``kind``: ``done``, ``reassigned`` or
    ``claimed``."""

    task_id: int
    kind: str
    change: str
    by: str
    assignee_id: str
    note: str = ""
