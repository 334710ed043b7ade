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
    """ruff's findings of banned calls for ``source`` as if it were the file at ``path``."""
    checked = subprocess.run(
        [str(RUFF), "check", "--select", "TID251,PTH123", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode in (0, 1), checked.stderr  # 2: ruff itself failed
    return checked.stdout


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from datetime import datetime\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import datetime\nx = datetime.date.today()\n", "datetime.date.today"),
        ("import time\nx = time.time()\n", "time"),
        ("import time\nx = time.localtime()\n", "time"),
        ("import asyncio\nasyncio.wait([])\n", "asyncio.wait"),
        ("import shutil\n", "shutil"),
        ("import random\nx = random.random()\n", "random"),
        ("import uuid\nx = uuid.uuid4()\n", "uuid.uuid4"),
        ("import httpx\n", "httpx"),
        ("from crm.store.db import Database\n", "crm.store.db"),
        ("import asyncio\nasyncio.to_thread(print)\n", "asyncio.to_thread"),
    ],
)
def test_a_non_deterministic_call_in_a_workflow_is_refused(source: str, banned: str) -> None:
    assert f"`{banned}` is banned" in ruff_findings(source)


def test_a_workflow_opening_a_file_is_refused() -> None:
    assert "PTH123" in ruff_findings('text = open("notes.txt").read()\n')


def test_the_same_code_outside_workflows_is_allowed() -> None:
    assert "banned" not in ruff_findings(
        "import random\nx = random.random()\n", "activities/probe.py"
    )


#: What workflow code may import besides workflows and crm.domain (the pure logic, whose
#: own imports are checked the same way): the SDK's workflow-side modules and pure
#: standard-library modules. Anything else is I/O or state a replay cannot reproduce,
#: and needs an activity.
MAY_IMPORT = {
    "__future__",
    "asyncio",
    "collections",
    "contextlib",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "itertools",
    "math",
    "re",
    "typing",
    "zoneinfo",
    "cel",  # CEL, evaluated in Rust: pure, no I/O, no clock (crm.domain.expressions)
    "temporalio",
    "temporalio.common",
    "temporalio.converter",
    "temporalio.exceptions",
    "temporalio.workflow",
}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, named in full.

    ``from crm.domain import x`` is ``crm.domain.x``.
    """
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in {"crm.domain", "workflows"}:
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                modules.add(node.module)
    return modules


def crm_modules_workflows_import() -> list[Path]:
    """The crm modules imported by ``workflows/``, and the crm modules those import."""
    found: set[Path] = set()
    pending = sorted((ROOT / "workflows").glob("*.py"))
    while pending:
        for module in imported_modules(pending.pop()):
            path = ROOT / f"{module.replace('.', '/')}.py"
            if module.startswith("crm.") and path not in found:
                found.add(path)
                pending.append(path)
    return sorted(found)


def test_workflow_code_imports_only_what_replays() -> None:
    for path in [*sorted((ROOT / "workflows").glob("*.py")), *crm_modules_workflows_import()]:
        for module in imported_modules(path):
            allowed = module in MAY_IMPORT or module.split(".")[0] == "workflows"
            allowed = allowed or module.startswith("crm.domain.")  # checked by the walk
            allowed = allowed or module.rsplit(".", 1)[0] in MAY_IMPORT  # collections.abc
            assert allowed, f"{path.relative_to(ROOT)} imports {module}"


def test_crm_modules_workflows_import_obey_the_workflow_bans() -> None:
    modules = crm_modules_workflows_import()
    assert ROOT / "crm" / "domain" / "calendar.py" in modules  # the walk finds what workflows use
    checked = subprocess.run(
        [str(RUFF), "check", "--config", str(WORKFLOW_RULES), *map(str, modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
