"""Schedules of days: the one check every process's days pass, and onboarding's defaults.

Onboarding's days and milestones are defined once, on ``OnboardingSchedule``;
the policy file's ``onboarding:`` section defaults to them and builds the
schedule a run receives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.domain.schedules import OnboardingSchedule, schedule_days_problem
from crm.policy import Policy, PolicyError, load_policy
from workflows.onboarding_types import OnboardingInput

day_lists = st.lists(st.integers(min_value=-5, max_value=60), max_size=8)


def test_days_that_come_one_after_another_are_a_schedule() -> None:
    assert schedule_days_problem([3, 7, 10, 30], "schedule days") is None
    assert schedule_days_problem([], "schedule days") is None


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ([7, 3, 10, 30], "schedule days must be strictly increasing, got [7, 3, 10, 30]"),
        ([3, 3, 10], "schedule days must be strictly increasing, got [3, 3, 10]"),
        ([0, 7], "schedule days must be positive day counts, got [0, 7]"),
        ([-2, 7], "schedule days must be positive day counts, got [-2, 7]"),
    ],
    ids=["decreasing", "repeated", "day-zero", "negative"],
)
def test_days_out_of_order_or_not_positive_are_named_in_the_problem(
    days: list[int], message: str
) -> None:
    assert schedule_days_problem(days, "schedule days") == message


def test_days_counting_down_to_a_date_must_decrease() -> None:
    assert schedule_days_problem([90, 60, 30, 7], "reminder_days", counting_down=True) is None
    assert (
        schedule_days_problem([30, 60], "reminder_days", counting_down=True)
        == "reminder_days must be strictly decreasing, got [30, 60]"
    )


@given(day_lists)
def test_days_are_a_schedule_exactly_when_positive_and_strictly_increasing(
    days: list[int],
) -> None:
    in_order = all(day >= 1 for day in days) and days == sorted(set(days))
    assert (schedule_days_problem(days, "days") is None) == in_order


@given(day_lists)
def test_counting_down_accepts_exactly_the_reversed_schedules(days: list[int]) -> None:
    counting_up = schedule_days_problem(days[::-1], "days")
    assert (schedule_days_problem(days, "days", counting_down=True) is None) == (
        counting_up is None
    )


def test_the_policy_defaults_are_the_schedule_defaults() -> None:
    assert Policy().onboarding.schedule() == OnboardingSchedule()
    assert OnboardingSchedule().days() == [3, 7, 10, 30]


def test_the_policy_file_overrides_reach_the_schedule_a_run_receives(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(
        "onboarding:\n"
        "  nudge_days: [2, 4]\n"
        "  at_risk_day: 8\n"
        "  milestones: [account_configured]\n"
        "  calendar: {timezone: Europe/Stockholm}\n",
        encoding="utf-8",
    )
    schedule = load_policy(path).onboarding.schedule()
    assert schedule.days() == [2, 4, 8, 30]
    assert schedule.milestones == ["account_configured"]
    assert schedule.kickoff_business_days == 2
    assert schedule.calendar.timezone == "Europe/Stockholm"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "nudge_days: [7, 3]",
            "nudge_days, at_risk_day and stall_day must be strictly increasing, got [7, 3, 10, 30]",
        ),
        (
            "nudge_days: [0, 7]",
            "nudge_days, at_risk_day and stall_day must be positive day counts, got [0, 7, 10, 30]",
        ),
        ("stall_day: 9", "must be strictly increasing, got [3, 7, 10, 9]"),
        ("milestones: []", "milestones must name at least one activation milestone"),
    ],
    ids=["nudges-decreasing", "nudge-on-day-zero", "stall-before-at-risk", "no-milestones"],
)
def test_an_invalid_onboarding_section_stops_start_up_with_a_message_naming_it(
    tmp_path: Path, section: str, message: str
) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(f"onboarding:\n  {section}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    assert message in str(error.value)


def test_an_onboarding_input_names_each_problem_of_its_schedule() -> None:
    customer = OnboardingInput(
        customer_id="c-1",
        company_name="Acme",
        contact_name="Ann",
        contact_email="ann@acme.io",
        plan="starter",
        csm_pool="csm-smb",
        schedule=OnboardingSchedule(nudge_days=[7, 3], milestones=[]),
    )
    assert customer.problems() == [
        "schedule days must be strictly increasing, got [7, 3, 10, 30]",
        "schedule.milestones must name at least one milestone",
    ]
