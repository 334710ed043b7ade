"""The lint that keeps non-deterministic calls out of workflow code.

Workers run workflows without the SDK's sandbox by default, so ruff's bans in
``workflows/ruff.toml`` are what stops the clock, randomness or I/O reaching
a workflow outside the code paths the (sandboxed) tests run. These tests
prove the bans bite, and apply them to the crm modules workflows import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RUFF = Path(sys.executable).parent / "ruff"
WORKFLOW_RULES = ROOT / "workflows" / "ruff.toml"


def ruff_findings(source: str, path: str = "workflows/probe.py") -> str:
    """ruff's TID251 findings for ``source`` as if it were the file at ``path``."""
    checked = subprocess.run(
        [str(RUFF), "check", "--select", "TID251", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return checked.stdout


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from datetime import datetime\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import datetime\nx = datetime.date.today()\n", "datetime.date.today"),
        ("import time\nx = time.time()\n", "time.time"),
        ("import random\nx = random.random()\n", "random"),
        ("import uuid\nx = uuid.uuid4()\n", "uuid.uuid4"),
        ("import httpx\n", "httpx"),
        ("from crm.db import Database\n", "crm.db"),
        ("import asyncio\nasyncio.to_thread(print)\n", "asyncio.to_thread"),
    ],
)
def test_a_non_deterministic_call_in_a_workflow_is_refused(source: str, banned: str) -> None:
    assert f"`{banned}` is banned" in ruff_findings(source)


def test_the_same_code_outside_workflows_is_allowed() -> None:
    assert "banned" not in ruff_findings(
        "import random\nx = random.random()\n", "activities/probe.py"
    )


def crm_modules_workflows_import() -> list[Path]:
    """The crm modules imported by ``workflows/``, and the crm modules those import."""
    found: set[Path] = set()
    pending = sorted((ROOT / "workflows").glob("*.py"))
    while pending:
        tree = ast.parse(pending.pop().read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crm."):
                module = ROOT / f"{node.module.replace('.', '/')}.py"
                if module not in found:
                    found.add(module)
                    pending.append(module)
    return sorted(found)


def test_crm_modules_workflows_import_obey_the_workflow_bans() -> None:
    modules = crm_modules_workflows_import()
    assert ROOT / "crm" / "calendar.py" in modules  # the walk finds what workflows use
    checked = subprocess.run(
        [str(RUFF), "check", "--config", str(WORKFLOW_RULES), *map(str, modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout
