"""The README's examples stay true."""

from __future__ import annotations

import re
from pathlib import Path

from crm.policy import load_policy

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_the_policy_example_is_a_valid_policy_file(tmp_path: Path) -> None:
    section = README[README.index("### Policy file") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match is not None
    path = tmp_path / "policy.yml"
    path.write_text(match.group(1))
    policy = load_policy(path)
    assert policy.onboarding.calendar.timezone == "Europe/Stockholm"
    assert policy.renewal.max_discount_without_approval == 10


def test_the_first_lines_give_the_two_commands() -> None:
    commands = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert commands.startswith("./scripts/dev ")
    assert "\n./scripts/test " in commands
