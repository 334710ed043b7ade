"""The decisions a lead's run makes without I/O: its follow-ups, quiet hours, routing and events.

``crm.domain.leads`` decides, the workflow only waits and calls activities;
``workflows.lead_types`` holds what a run knows of its lead and the records it
makes of it. Checked here without a Temporal server, with hypothesis where a
property covers more than a few examples.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.domain.calendar import CalendarSpec
from crm.domain.lead_scoring import LeadScore, ScoringModel, ScoringRule
from crm.domain.leads import (
    ENGAGEMENT_EVENTS,
    LEAD_EVENTS,
    STOP_EVENTS,
    LeadEvents,
    LeadTerms,
    Territory,
    call_due,
    follow_ups,
    quiet_hours_calendar,
    send_time,
    terms_problems,
)
from crm.policy import Policy
from workflows.contracts import Assignment, CompanyProfile
from workflows.lead_types import EVENT_DATA, LeadDossier, LeadInput

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"]

instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
increasing_days = st.lists(st.integers(min_value=1, max_value=90), unique=True, max_size=6).map(
    sorted
)


def lead(**changes: object) -> LeadInput:
    """A webinar lead from Germany with the policy's default terms."""
    fields: dict[str, object] = {
        "lead_id": "l-1",
        "email": "lena@acme-corp.io",
        "name": "Lena Vogel",
        "source": "webinar",
        "title": "Head of Operations",
        "country": "de",
        "terms": Policy().leads.terms("Europe/Berlin"),
    }
    return LeadInput(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_default_sequence_follows_up_on_day_2_5_and_10() -> None:
    plan = follow_ups(Policy().leads.terms())
    assert [(f.step, f.day) for f in plan] == [
        ("follow_up_1", 2),
        ("follow_up_2", 5),
        ("follow_up_3", 10),
    ]
    assert [f.context() for f in plan] == [
        {"number": 1, "total": 3, "final": False},
        {"number": 2, "total": 3, "final": False},
        {"number": 3, "total": 3, "final": True},
    ]


@given(increasing_days)
def test_each_follow_up_day_gets_one_numbered_step_and_only_the_last_is_final(
    days: list[int],
) -> None:
    plan = follow_ups(LeadTerms(follow_up_days=days, unresponsive_day=100))
    assert [f.day for f in plan] == days
    assert [f.number for f in plan] == list(range(1, len(days) + 1))
    assert len({f.step for f in plan}) == len(days)
    assert [f.context()["final"] for f in plan] == [n == len(days) for n in range(1, len(days) + 1)]


def test_an_email_due_at_night_waits_for_the_morning_in_the_leads_time_zone() -> None:
    terms = Policy().leads.terms("Europe/Berlin")
    night = datetime(2026, 3, 2, 3, 0, tzinfo=BERLIN)
    assert send_time(terms, night) == datetime(2026, 3, 2, 8, 0, tzinfo=BERLIN)
    evening = datetime(2026, 3, 2, 18, 0, tzinfo=BERLIN)
    assert send_time(terms, evening) == datetime(2026, 3, 3, 8, 0, tzinfo=BERLIN)
    morning = datetime(2026, 3, 2, 9, 15, tzinfo=BERLIN)
    assert send_time(terms, morning) == morning


@given(instants, st.sampled_from(ZONES))
def test_an_email_goes_out_at_once_inside_the_window_else_at_its_next_opening(
    now: datetime, zone: str
) -> None:
    terms = LeadTerms(send_calendar=quiet_hours_calendar(zone, "08:00-18:00"))
    sent = send_time(terms, now)
    local = sent.astimezone(ZoneInfo(zone))
    assert now <= sent < now + timedelta(days=1)
    assert 8 <= local.hour < 18
    if 8 <= now.astimezone(ZoneInfo(zone)).hour < 18:
        assert sent == now
    else:
        assert (local.hour, local.minute) == (8, 0)


def test_a_lead_routed_late_on_friday_is_due_in_the_reps_first_business_hour_on_monday() -> None:
    emea = Territory(
        name="emea",
        pool="sales-emea",
        countries=["DE"],
        calendar=CalendarSpec(timezone="Europe/Berlin"),
    )
    friday = datetime(2026, 3, 6, 16, 30, tzinfo=BERLIN)
    due = call_due(LeadTerms(rep_task_hours=1.0), emea, friday)
    assert due == datetime(2026, 3, 9, 9, 30, tzinfo=BERLIN)


@given(
    st.lists(st.sampled_from(LEAD_EVENTS), max_size=10),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 1)),
)
def test_each_event_counts_once_and_the_first_stop_event_ends_the_sequence(
    sent: list[str], start: datetime
) -> None:
    events = LeadEvents()
    news = [events.record(kind, start + timedelta(minutes=i)) for i, kind in enumerate(sent)]

    first_seen = list(dict.fromkeys(sent))
    assert list(events.at) == first_seen
    assert sum(news) == len(first_seen)
    assert all(events.at[kind] == start + timedelta(minutes=sent.index(kind)) for kind in sent)
    assert events.stopped_by == next((kind for kind in sent if kind in STOP_EVENTS), None)
    assert events.heard_back() == bool(sent)
    assert events.engagement() == [kind for kind in first_seen if kind in ENGAGEMENT_EVENTS]


def test_every_lead_event_declares_its_data_and_none_carries_any() -> None:
    assert set(EVENT_DATA) == set(LEAD_EVENTS)
    assert set(EVENT_DATA.values()) == {None}


def test_the_policys_terms_are_usable() -> None:
    assert terms_problems(Policy().leads.terms("Asia/Kolkata")) == []
    assert lead().problems() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"follow_up_days": [5, 2]},
            "follow-up days must be strictly increasing, got [5, 2, 14]",
        ),
        ({"unresponsive_day": 0}, "follow-up days must be positive day counts, got [2, 5, 10, 0]"),
        (
            {"scoring": ScoringModel([ScoringRule("x", "shoe_size", 5, any_of=["42"])], 60, 30)},
            "scoring rule 'x': unknown fact 'shoe_size'",
        ),
        ({"send_calendar": CalendarSpec(timezone="Mars/Olympus")}, "Mars/Olympus"),
        ({"fallback_territory": "mars"}, "fallback territory 'mars' is not a territory"),
    ],
    ids=["follow-ups-out-of-order", "unresponsive-on-day-zero", "bad-rule", "bad-zone", "fallback"],
)
def test_unusable_terms_are_named_one_problem_each(change: dict[str, object], message: str) -> None:
    terms = LeadTerms(**change)  # type: ignore[arg-type]
    [problem] = terms_problems(terms)
    assert message in problem


def test_an_input_without_a_name_or_a_real_address_names_both() -> None:
    assert lead(name=" ", email="lena-at-acme").problems() == [
        "name is required",
        "email 'lena-at-acme' is not an email address",
    ]


def test_the_form_wins_over_the_company_profile_and_the_country_is_upper_cased() -> None:
    dossier = LeadDossier.of(lead(company=None, country=None))
    assert dossier.company == CompanyProfile(domain="acme-corp.io", complete=False)
    assert (dossier.company_name, dossier.country) == (None, None)

    dossier.company = CompanyProfile(domain="acme-corp.io", name="ACME", country="gb")
    assert (dossier.company_name, dossier.country) == ("ACME", "GB")
    dossier.lead = lead(company="Acme Corp", country="de")
    assert (dossier.company_name, dossier.country) == ("Acme Corp", "DE")
    assert dossier.facts().country == "DE"


def test_the_record_and_the_result_carry_the_latest_score_and_the_rep() -> None:
    dossier = LeadDossier.of(lead())
    assert dossier.record("lead-l-1", "new").score is None
    dossier.scores += [LeadScore(40, "medium", ["webinar"]), LeadScore(70, "high", ["replied"])]
    dossier.owner = Assignment(
        key="lead-l-1/assign_rep",
        pool="sales-emea",
        assignee_id="rep-eva",
        assignee_name="Eva Novak",
        assignee_email="eva.novak@example.com",
        manager_id="mgr-mia",
        open_load=0,
    )
    dossier.events.record("replied", datetime(2026, 3, 2, tzinfo=UTC))

    record = dossier.record("lead-l-1", "qualified")
    assert (record.status, record.score, record.grade, record.owner_id) == (
        "qualified",
        70,
        "high",
        "rep-eva",
    )
    assert (record.timezone, record.country, record.email_valid) == ("Europe/Berlin", "DE", True)
    result = dossier.result("qualified")
    assert (result.first_grade, result.grade, result.owner_id) == ("medium", "high", "rep-eva")
    assert list(result.events) == ["replied"]


def test_a_bounce_marks_the_address_invalid_in_the_record() -> None:
    dossier = LeadDossier.of(lead())
    dossier.events.record("bounced", datetime(2026, 3, 2, tzinfo=UTC))
    assert dossier.record("lead-l-1", "bounced").email_valid is False
    assert dossier.events.stopped_by == "bounced"


def test_the_reps_email_shows_the_lead_its_score_and_the_due_time_in_the_reps_zone() -> None:
    dossier = LeadDossier.of(lead(company="Acme Corp"))
    dossier.scores.append(LeadScore(70, "high", ["webinar", "replied"]))
    rep = Assignment(
        key="lead-l-1/assign_rep",
        pool="sales-emea",
        assignee_id="rep-eva",
        assignee_name="Eva Novak",
        assignee_email="eva.novak@example.com",
        manager_id="mgr-mia",
        open_load=0,
    )
    emea = Territory(
        name="emea",
        pool="sales-emea",
        countries=["DE"],
        calendar=CalendarSpec(timezone="Europe/Berlin"),
    )
    due = datetime(2026, 3, 9, 8, 30, tzinfo=UTC)

    briefing = dossier.rep_briefing(rep, emea, 42, due, "replied")

    assert briefing["rep_name"] == "Eva Novak"
    assert (briefing["lead_name"], briefing["company"], briefing["country"]) == (
        "Lena Vogel",
        "Acme Corp",
        "DE",
    )
    assert (briefing["score"], briefing["matched"]) == (70, ["webinar", "replied"])
    assert (briefing["due"], briefing["task_id"]) == ("2026-03-09 09:30 CET", 42)
