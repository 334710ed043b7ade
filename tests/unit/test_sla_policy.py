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


SLA_POLICIES_FILE = """\
sla:
  calendars:
    manila: {timezone: Asia/Manila, holidays: ["2026-04-09"]}
  policies:
    - name: vip
      when: {tags: [vip], organization: [acme]}
      around_the_clock: [urgent]
      clocks:
        next_reply:
          targets: {urgent: 30m, high: 2h}
          pause_on: [pending]
          ladder:
            - {name: reminder, at: -10m}
            - {name: breach, at: 100%, action: notify_role, role: team_lead, task: false}
            - {name: senior, at: +1h30m, action: reassign, group: support-senior}
"""


def test_sla_policies_and_group_calendars_load_from_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(SLA_POLICIES_FILE, encoding="utf-8")
    sla = load_policy(path).sla
    book = sla.book(sla.rules_for(None).terms("Europe/Stockholm"))
    vip = book.policies[0]
    assert (vip.name, vip.conditions.tags, vip.around_the_clock) == ("vip", ["vip"], ["urgent"])
    clock = vip.clocks[0]
    assert (clock.name, clock.targets, clock.pause_on) == (
        "next_reply",
        {"urgent": 1800.0, "high": 7200.0},
        ["pending"],
    )
    assert [(lv.name, lv.percent, lv.offset_seconds, lv.action) for lv in clock.ladder] == [
        ("reminder", None, -600.0, "notify_assignee"),
        ("breach", 100.0, None, "notify_role"),
        ("senior", None, 5400.0, "reassign"),
    ]
    assert clock.ladder[1].task is False
    assert book.calendars["manila"].timezone == "Asia/Manila"
    assert book.default.name == "default"
    assert [c.name for c in book.default.clocks] == ["first_response", "resolution"]
    assert "support-senior" in sla.pools()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"name": "p", "clocks": {"lunch": {"targets": {"high": "1h"}}}}, "not one of"),
        ({"name": "p", "clocks": {"next_reply": {"targets": {"vip": "1h"}}}}, "unknown priorit"),
        (
            {
                "name": "p",
                "clocks": {
                    "resolution": {
                        "targets": {"high": "1h"},
                        "ladder": [{"name": "x", "at": "soon"}],
                    }
                },
            },
            "at",
        ),
        (
            {
                "name": "p",
                "clocks": {
                    "resolution": {
                        "targets": {"high": "1h"},
                        "ladder": [{"name": "x", "at": "50%", "action": "notify_role"}],
                    }
                },
            },
            "needs a role",
        ),
        (
            {
                "name": "p",
                "clocks": {
                    "resolution": {
                        "targets": {"high": "1h"},
                        "ladder": [{"name": "x", "at": "+1h", "action": "reassign"}],
                    }
                },
            },
            "needs a group",
        ),
        (
            {
                "name": "p",
                "clocks": {"resolution": {"targets": {"high": "1h"}, "pause_on": ["solved"]}},
            },
            "cannot pause on",
        ),
    ],
)
def test_an_sla_policy_that_cannot_run_is_refused_naming_the_problem(
    policy: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SlaPolicy.model_validate({"policies": [policy]})


def test_a_group_calendar_must_be_a_calendar() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        SlaPolicy.model_validate({"calendars": {"mars": {"timezone": "Mars/Olympus"}}})
