"""The cron expressions a scheduled automation may name."""

from __future__ import annotations

import pytest

from crm.domain.cron import cron_problem


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * MON",
        "*/15 8-17 * * 1-5",
        "0 0 1 JAN,JUL *",
        "30 6 1-7 * sun",
        "0 9 * * 7",
        "@daily",
    ],
)
def test_a_cron_expression_both_dialects_read_alike_is_accepted(expression: str) -> None:
    assert cron_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 25 * * *", "hour '25': '25' is not within 0-23"),
        ("0 9 * *", "five fields: minute hour day-of-month month day-of-week"),
        ("0 9 * * FUNDAY", "day of week 'FUNDAY': 'FUNDAY' is not within 0-7"),
        ("*/0 * * * *", "minute '*/0': a step is at least 1"),
        ("0 17-9 * * *", "hour '17-9': the range '17-9' runs backwards"),
        ("0 9 ? * *", "day of month '?': '?' is not a value, range or step"),
        ("@fortnightly", "unknown macro '@fortnightly'"),
    ],
)
def test_a_cron_expression_that_cannot_fire_says_which_field(expression: str, problem: str) -> None:
    message = cron_problem(expression)
    assert message is not None and message.startswith(problem)
