"""What a process hears of the tasks it created, as people act on them."""

from dataclasses import dataclass

#: The signal every process takes when a person completes or reassigns one of its tasks.
TASK_CHANGED = "task_changed"


@dataclass
class TaskChange:
    """A person acted on task ``task_id`` of kind ``kind``: ``done`` or ``reassigned``."""

    task_id: int
    kind: str
    change: str
    by: str
    assignee_id: str
    note: str = ""
