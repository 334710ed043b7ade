"""The SLA section of the policy: defaults, tier overrides, clear errors at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crm.policy import PolicyError, load_policy
from crm.policy.sla import SlaPolicy

HOUR = 3600.0


def test_defaults_follow_the_issue() -> None:
    terms = SlaPolicy().rules_for(None).terms("Europe/Stockholm")
    assert {
        p: (t.first_response_seconds / HOUR, t.resolution_seconds / HOUR)
        for p, t in terms.targets.items()
    } == {
        "urgent": (1, 4),
        "high": (4, 8),
        "normal": (8, 24),
        "low": (12, 48),
    }
    assert [p for p, t in terms.targets.items() if t.around_the_clock] == ["urgent"]
    assert (terms.warning_at, terms.manager_at) == (0.75, 1.5)
    assert terms.calendar.timezone == "Europe/Stockholm"
    assert terms.calendar.hours == {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}


def test_a_tier_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(
        "sla:\n"
        "  holidays: ['2026-12-25']\n"
        "  tiers:\n"
        "    enterprise:\n"
        "      reassign_pool: support-senior\n"
        "      targets: {normal: {first_response: 4h}, low: {resolution: 72h30m}}\n"
        "    bench:\n"
        "      warning_at: 0.5\n"
        "      targets: {urgent: {first_response: 90s, resolution: 600}}\n",
        encoding="utf-8",
    )
    sla = load_policy(path).sla
    enterprise = sla.rules_for("enterprise")
    assert enterprise.targets["normal"].first_response == timedelta(hours=4)
    assert enterprise.targets["normal"].resolution == timedelta(hours=24)
    assert enterprise.targets["low"].resolution == timedelta(hours=72, minutes=30)
    assert enterprise.reassign_pool == "support-senior"
    assert enterprise.holidays == ["2026-12-25"]
    assert sla.rules_for("bench").targets["urgent"].first_response == timedelta(seconds=90)
    assert sla.rules_for("bench").warning_at == 0.5
    assert sla.rules_for("starter") == sla.rules_for(None)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("sla: {warning_at: 1.2}", "0 < warning_at < 1 < manager_at"),
        ("sla: {targets: {normal: {first_response: 0s, resolution: 8h}}}", "positive"),
        ("sla: {targets: {normal: {first_response: 9h, resolution: 8h}}}", "must not be shorter"),
        ("sla: {targets: {normal: {first_response: soon, resolution: 8h}}}", "first_response"),
        ("sla: {hours: {mon: '17:00-09:00'}}", "closes at or before it opens"),
        ("sla: {timezone: Mars/Olympus}", "Mars/Olympus"),
        ("sla: {pool: nobody}", "unknown pool 'nobody'"),
        ("sla: {tiers: {gold: {targets: {critical: {first_response: 1h}}}}}", "tiers.gold"),
        ("sla: {tiers: {gold: {targets: {high: {first_response: 9h}}}}}", "tiers.gold"),
        ("sla: {pool: csm-smb}", "needs a manager_id"),
    ],
)
def test_an_invalid_sla_policy_stops_start_up_with_a_clear_error(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(yaml_text + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="invalid policy file") as error:
        load_policy(path)
    assert message in str(error.value)
