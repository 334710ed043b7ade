"""Lead scoring: rules that are data, and the pure function that applies them.

A rule awards ``points`` (negative points penalise) when one ``fact`` about a
lead matches it:

``title``
    the job title contains one of ``any_of`` as whole words, ignoring case
    ("vp" matches "VP Sales", not "MVP");
``industry``, ``source``, ``country``
    the value equals one of ``any_of``, ignoring case;
``employees``
    the company's head count lies in ``min``..``max`` (inclusive; either may
    be left open);
``event``
    the lead has sent one of the engagement events ``any_of`` (``replied``,
    ``meeting_booked``, ...).

Each rule counts at most once. The total is graded against two thresholds:
``high`` and above goes to sales, ``medium`` and above gets the follow-up
sequence, below is nurtured by marketing.

Workflows call ``score_lead`` directly: it is deterministic and fast, and the
rules travel in the workflow input, so a run keeps the rules it started with.
"""

import re
from dataclasses import dataclass, field

#: The lead facts a rule can look at, and whether it matches words, values or a range.
TEXT_FACTS = ("title",)
VALUE_FACTS = ("industry", "source", "country", "event")
RANGE_FACTS = ("employees",)
RULE_FACTS = (*TEXT_FACTS, *VALUE_FACTS, *RANGE_FACTS)
GRADES = ("high", "medium", "low")


class ScoringError(ValueError):
    """A scoring rule or threshold is invalid; the message names the rule and the problem."""


@dataclass(frozen=True)
class ScoringRule:
    """Award ``points`` when the lead's ``fact`` matches; see the module docstring."""

    name: str
    fact: str
    points: int
    any_of: list[str] = field(default_factory=list)
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class ScoringModel:
    """The rules and the grade thresholds (``high`` > ``medium``)."""

    rules: list[ScoringRule]
    high: int
    medium: int


@dataclass(frozen=True)
class LeadFacts:
    """What is known about a lead when it is scored; unknown facts are None."""

    title: str | None = None
    industry: str | None = None
    source: str | None = None
    country: str | None = None
    employees: int | None = None
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LeadScore:
    """The total, its grade, and the names of the rules that matched, in rule order."""

    points: int
    grade: str
    matched: list[str]


def validate_rule(rule: ScoringRule) -> None:
    """Check that ``rule`` can match something; raises ScoringError naming the problem."""
    where = f"scoring rule {rule.name!r}"
    if not rule.name.strip():
        raise ScoringError("every scoring rule needs a name")
    if rule.fact not in RULE_FACTS:
        raise ScoringError(
            f"{where}: unknown fact {rule.fact!r}; use one of {', '.join(RULE_FACTS)}"
        )
    if rule.fact in RANGE_FACTS:
        if rule.any_of:
            raise ScoringError(f"{where}: fact {rule.fact!r} takes min/max, not any_of")
        if rule.min is None and rule.max is None:
            raise ScoringError(f"{where}: fact {rule.fact!r} needs min, max or both")
        if rule.min is not None and rule.max is not None and rule.max < rule.min:
            raise ScoringError(f"{where}: max {rule.max} is below min {rule.min}")
        return
    if rule.min is not None or rule.max is not None:
        raise ScoringError(f"{where}: fact {rule.fact!r} takes any_of, not min/max")
    if not [value for value in rule.any_of if value.strip()]:
        raise ScoringError(f"{where}: fact {rule.fact!r} needs a non-empty any_of list")


def validate_model(model: ScoringModel) -> None:
    """Check every rule, unique names and ``high > medium``; raises ScoringError."""
    names = [rule.name for rule in model.rules]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ScoringError(f"scoring rule names must be unique, repeated: {repeated}")
    for rule in model.rules:
        validate_rule(rule)
    if model.high <= model.medium:
        raise ScoringError(
            f"threshold high ({model.high}) must be above threshold medium ({model.medium})"
        )


def score_lead(model: ScoringModel, facts: LeadFacts) -> LeadScore:
    """Apply every rule of ``model`` to ``facts`` and grade the total.

    Pure and deterministic. Raises ScoringError for a rule ``validate_rule`` rejects.
    """
    points = 0
    matched: list[str] = []
    for rule in model.rules:
        if _matches(rule, facts):
            points += rule.points
            matched.append(rule.name)
    return LeadScore(points=points, grade=grade(model, points), matched=matched)


def grade(model: ScoringModel, points: int) -> str:
    """``high``, ``medium`` or ``low`` for a total of ``points``."""
    if points >= model.high:
        return "high"
    if points >= model.medium:
        return "medium"
    return "low"


def _matches(rule: ScoringRule, facts: LeadFacts) -> bool:
    validate_rule(rule)
    if rule.fact == "employees":
        if facts.employees is None:
            return False
        low = rule.min if rule.min is not None else facts.employees
        high = rule.max if rule.max is not None else facts.employees
        return low <= facts.employees <= high
    wanted = [value.strip().lower() for value in rule.any_of if value.strip()]
    if rule.fact == "title":
        words = " ".join(re.findall(r"[a-z0-9]+", (facts.title or "").lower()))
        return any(re.search(rf"\b{re.escape(w)}\b", words) for w in wanted)
    if rule.fact == "event":
        return any(event.lower() in wanted for event in facts.events)
    value: str | None = getattr(facts, rule.fact)
    return value is not None and value.strip().lower() in wanted


DEFAULT_RULES: tuple[ScoringRule, ...] = (
    ScoringRule(
        "decision_maker",
        "title",
        25,
        any_of=[
            "chief",
            "ceo",
            "cto",
            "cfo",
            "coo",
            "founder",
            "vp",
            "vice president",
            "head",
            "director",
        ],
    ),
    ScoringRule("manager", "title", 10, any_of=["manager", "lead"]),
    ScoringRule("student", "title", -20, any_of=["student", "intern"]),
    ScoringRule("small_company", "employees", 5, min=11, max=50),
    ScoringRule("mid_market", "employees", 15, min=51, max=1000),
    ScoringRule("enterprise", "employees", 20, min=1001),
    ScoringRule(
        "target_industry",
        "industry",
        10,
        any_of=["Software", "Financial Services", "Healthcare", "Telecommunications"],
    ),
    ScoringRule("demo_request", "source", 25, any_of=["demo_request"]),
    ScoringRule("referral", "source", 20, any_of=["referral"]),
    ScoringRule("webinar", "source", 10, any_of=["webinar", "event"]),
    ScoringRule("replied", "event", 30, any_of=["replied"]),
    ScoringRule("meeting_booked", "event", 50, any_of=["meeting_booked"]),
)
DEFAULT_HIGH = 60
DEFAULT_MEDIUM = 30
