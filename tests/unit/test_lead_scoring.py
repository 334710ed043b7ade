"""Lead scoring rules, read from a policy file and applied by ``crm.domain.lead_scoring``.

The rules are data: a sales team edits the ``leads:`` section of the YAML
policy file, the worker and API validate it at start-up, and a mistake stops
them with a message that names the rule and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from crm.domain.lead_scoring import LeadFacts, ScoringModel, ScoringRule, score_lead
from crm.domain.leads import territory_for
from crm.policy import Policy, PolicyError, load_policy

POLICY_FILE = """\
leads:
  scoring:
    thresholds: {high: 50, medium: 20}
    rules:
      - {name: decision_maker, fact: title, any_of: [vp, head of, director], points: 30}
      - {name: student, fact: title, any_of: [student], points: -25}
      - {name: mid_market, fact: employees, min: 51, max: 1000, points: 15}
      - {name: enterprise, fact: employees, min: 1001, points: 25}
      - {name: fintech, fact: industry, any_of: [Financial Services], points: 10}
      - {name: demo, fact: source, any_of: [demo_request], points: 20}
      - {name: dach, fact: country, any_of: [DE, AT, CH], points: 5}
      - {name: replied, fact: event, any_of: [replied], points: 30}
"""


@pytest.fixture
def scoring(tmp_path: Path) -> ScoringModel:
    path = tmp_path / "policy.yml"
    path.write_text(POLICY_FILE, encoding="utf-8")
    return load_policy(path).leads.scoring.model()


@pytest.mark.parametrize(
    ("facts", "points", "grade", "matched"),
    [
        (
            LeadFacts(title="VP Sales", employees=300, source="demo_request", country="de"),
            70,
            "high",
            ["decision_maker", "mid_market", "demo", "dach"],
        ),
        (LeadFacts(title="Head of Finance"), 30, "medium", ["decision_maker"]),
        (LeadFacts(title="MVP Engineer", employees=50), 0, "low", []),
        (LeadFacts(title="Director", employees=1001), 55, "high", ["decision_maker", "enterprise"]),
        (LeadFacts(industry="financial services", source="webinar"), 10, "low", ["fintech"]),
        (LeadFacts(title="PhD student"), -25, "low", ["student"]),
        (LeadFacts(source="webinar", events=["replied"]), 30, "medium", ["replied"]),
        (LeadFacts(events=["meeting_booked"]), 0, "low", []),
        (LeadFacts(), 0, "low", []),
    ],
    ids=[
        "vp-mid-market-demo-in-dach",
        "multi-word-title",
        "title-matches-whole-words-only",
        "enterprise-has-no-upper-bound",
        "values-ignore-case",
        "negative-points",
        "engagement-event",
        "unlisted-event",
        "nothing-known",
    ],
)
def test_rules_from_the_policy_file_score_and_grade_a_lead(
    scoring: ScoringModel, facts: LeadFacts, points: int, grade: str, matched: list[str]
) -> None:
    score = score_lead(scoring, facts)
    assert (score.points, score.grade, score.matched) == (points, grade, matched)


def test_thresholds_are_inclusive(scoring: ScoringModel) -> None:
    assert score_lead(scoring, LeadFacts(source="demo_request")).grade == "medium"  # 20
    assert score_lead(scoring, LeadFacts(title="VP", source="demo_request")).grade == "high"  # 50


def test_default_rules_send_a_vp_of_a_mid_sized_software_company_to_sales() -> None:
    scoring = Policy().leads.scoring.model()
    vp = LeadFacts(title="VP Sales", employees=300, industry="Software", source="demo_request")
    assert score_lead(scoring, vp).grade == "high"
    director = LeadFacts(title="Director of Operations", employees=20, source="webinar")
    assert score_lead(scoring, director).grade == "medium"
    assert score_lead(scoring, LeadFacts(title="Student", source="newsletter")).grade == "low"
    replied = LeadFacts(title="Director of Operations", employees=20, events=["replied"])
    assert score_lead(scoring, replied).grade == "high"


def test_territory_is_chosen_by_country_with_a_fallback() -> None:
    terms = Policy().leads.terms()
    assert territory_for(terms, "de").pool == "sales-emea"
    assert territory_for(terms, "US").pool == "sales-americas"
    assert territory_for(terms, "SG").pool == "sales-apac"
    assert territory_for(terms, "ZA").name == "emea"
    assert territory_for(terms, None).name == "emea"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "scoring: {rules: [{name: shoes, fact: shoe_size, any_of: ['42'], points: 5}]}",
            "leads.scoring.rules.0.fact\n  Input should be 'title', 'industry', 'source'",
        ),
        (
            "scoring: {rules: [{name: big, fact: employees, any_of: [large], points: 5}]}",
            "scoring rule 'big': fact 'employees' takes min/max, not any_of",
        ),
        (
            "scoring: {rules: [{name: vp, fact: title, min: 3, points: 5}]}",
            "scoring rule 'vp': fact 'title' takes any_of, not min/max",
        ),
        (
            "scoring: {rules: [{name: vp, fact: title, any_of: [], points: 5}]}",
            "scoring rule 'vp': fact 'title' needs a non-empty any_of list",
        ),
        (
            "scoring: {rules: [{name: mid, fact: employees, min: 500, max: 50, points: 5}]}",
            "scoring rule 'mid': max 50 is below min 500",
        ),
        (
            "scoring: {rules: [{name: vp, fact: title, any_of: [vp]}]}",
            "leads.scoring.rules.0.points\n  Field required",
        ),
        (
            "scoring: {rules: [{name: a, fact: source, any_of: [x], points: 1, weight: 2}]}",
            "leads.scoring.rules.0.weight\n  Extra inputs are not permitted",
        ),
        (
            "scoring:\n    rules:\n"
            "      - {name: a, fact: source, any_of: [x], points: 1}\n"
            "      - {name: a, fact: source, any_of: [y], points: 2}",
            "scoring rule names must be unique, repeated: ['a']",
        ),
        (
            "scoring: {thresholds: {high: 30, medium: 30}}",
            "threshold high (30) must be above threshold medium (30)",
        ),
        (
            "follow_up_days: [5, 2, 10]",
            "follow_up_days and unresponsive_day must be strictly increasing, got [5, 2, 10, 14]",
        ),
        (
            "quiet_hours: {send_window: '18:00-08:00'}",
            "send_window '18:00-08:00': hours['mon'] closes at or before it opens",
        ),
        (
            "territories: {emea: {pool: sales-nowhere, countries: [DE]}}",
            "leads.territories['emea']: unknown pool 'sales-nowhere'",
        ),
        (
            "territories: {emea: {pool: sales-emea, countries: [Germany]}}",
            "countries must be ISO 3166 alpha-2 codes like 'DE', got ['Germany']",
        ),
        ("fallback_territory: mars", "fallback_territory 'mars' is not one of the territories"),
    ],
    ids=[
        "unknown-fact",
        "range-fact-with-values",
        "text-fact-with-range",
        "empty-any-of",
        "max-below-min",
        "missing-points",
        "unknown-key",
        "duplicate-names",
        "thresholds-not-ordered",
        "follow-ups-out-of-order",
        "send-window-over-midnight",
        "unknown-territory-pool",
        "country-not-a-code",
        "unknown-fallback-territory",
    ],
)
def test_an_invalid_leads_section_stops_start_up_with_a_message_naming_it(
    tmp_path: Path, section: str, message: str
) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("leads:\n  " + dedent(section) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_score_lead_refuses_a_rule_that_cannot_match() -> None:
    broken = ScoringModel([ScoringRule("x", "employees", 5)], high=60, medium=30)
    with pytest.raises(ValueError, match="scoring rule 'x': fact 'employees' needs min, max"):
        score_lead(broken, LeadFacts(employees=10))
