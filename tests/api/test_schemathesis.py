"""Schemathesis fuzzes the API from its own OpenAPI document.

Every documented operation gets generated requests (examples, boundary
values, random data) with a key holding every role. The run fails on any
5xx and on any response that does not match the schema the API publishes
for its status code, content type included. The counts of the last run are
printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.timeout(600)
def test_fuzzed_requests_get_no_5xx_and_responses_match_the_schema(
    api_url: str, api_keys: dict[str, str], tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {api_keys['all']}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--phases",
            "examples,fuzzing",  # the coverage phase crashes inside schemathesis 4.32 here
            "--max-examples",
            "10",
            "--seed",
            "20261123",
            "--workers",
            "2",
            "--request-timeout",
            "15",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
        env={"SCHEMATHESIS_HOOKS": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    summary = run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, summary
