"""What the attention watch and its activity exchange (``workflows.attention_watch``)."""

from dataclasses import dataclass, field
from datetime import datetime

#: The activity that reads what needs attention and keeps what was seen before.
CHECK_ATTENTION = "check_attention"
#: The workflow a Temporal Schedule starts to look for new attention items.
ATTENTION_WATCH = "AttentionWatchWorkflow"


@dataclass
class AttentionWatch:
    """One look: whom to email about what is new (nobody when None)."""

    operator_email: str | None = None


@dataclass
class AttentionCheck:
    """The activity's input: the look's id, which keys the events it emits."""

    watch_id: str


@dataclass
class RaisedItem:
    """An item that was not on the list at the previous look."""

    kind: str
    process_id: str | None
    subject: str
    problem: str
    since: datetime | None
    actions: list[str] = field(default_factory=list)


@dataclass
class AttentionChecked:
    """What the look found: how many items are open, and which of them are new."""

    open_items: int
    raised: list[RaisedItem] = field(default_factory=list)
