"""``crmflow dev`` end to end: the stack as a user runs it, stopped and started again.

The stack runs from a temporal-dev.yml on free ports in a temporary folder, so
it does not collide with a stack the developer has running. The test starts an
onboarding for customer c-42 through the API, finds it with the Temporal CLI
by its search attributes, reads the welcome email with ``crmflow mail``, has
the webhook sink verify a delivery signed with a new endpoint's secret, stops
the stack with SIGTERM and starts it again: the run is still there, waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from activities.outbound import signed_headers, signing_key
from tests.support.servers import free_port

BIN_DIR = Path(sys.executable).parent
STARTUP_TIMEOUT = 60.0


def stack_config(root: Path) -> dict[str, Any]:
    with open(Path(__file__).parents[2] / "temporal-dev.yml") as shipped:
        config: dict[str, Any] = yaml.safe_load(shipped)
    config["temporal"]["address"] = f"127.0.0.1:{free_port()}"
    config["temporal"]["ui_port"] = None
    config["smtp_sink"]["port"] = free_port()
    config["enrichment_provider"]["port"] = free_port()
    config["webhook_sink"]["port"] = free_port()
    config["api"]["port"] = free_port()
    config["worker"]["metrics_port"] = free_port()
    config["database_url"] = f"sqlite:///{root / '.crmflow' / 'crm.db'}"
    return config


@contextmanager
def running_stack(root: Path) -> Iterator[subprocess.Popen[str]]:
    """``crmflow dev`` in ``root``; stopped with SIGTERM on exit, which must end it cleanly."""
    stack = subprocess.Popen(
        [str(BIN_DIR / "crmflow"), "dev", "--config", str(root / "temporal-dev.yml")],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert stack.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        output = []
        for line in stack.stdout:
            output.append(line)
            if line.startswith("crmflow dev stack is up"):
                break
            assert time.monotonic() < deadline, "".join(output)
        else:
            pytest.fail("crmflow dev exited before it was up:\n" + "".join(output))
        # Keep reading, so the stack never blocks on a full pipe.
        threading.Thread(target=output.extend, args=(stack.stdout,), daemon=True).start()
        yield stack
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=60)
    assert stack.returncode == 0, "".join(output)


def children(parent: int, command: str) -> list[int]:
    """Pids of the live children of ``parent`` whose command line contains ``command``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == parent and command in cmdline:
            found.append(int(proc.name))
    return found


def as_role(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def wait_for_stage(api: httpx.Client, process_id: str, stage: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        view: dict[str, Any] = api.get(f"/v1/processes/{process_id}").json()
        if (view.get("state") or {}).get("stage") == stage or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def test_dev_stack_runs_finds_and_keeps_an_onboarding_across_a_restart(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    (tmp_path / "temporal-dev.yml").write_text(yaml.safe_dump(config))
    api_url = f"http://127.0.0.1:{config['api']['port']}"
    temporal = config["temporal"]["address"]

    with running_stack(tmp_path) as stack, httpx.Client(base_url=api_url, timeout=10) as anonymous:
        keys = yaml.safe_load((tmp_path / ".crmflow" / "dev-api-keys.yml").read_text())
        api = httpx.Client(base_url=api_url, timeout=10, headers=as_role(keys, "service"))
        support = httpx.Client(base_url=api_url, timeout=10, headers=as_role(keys, "support"))
        assert anonymous.get("/v1/tasks").status_code == 401
        started = api.post(
            "/v1/onboardings",
            json={
                "customer_id": "c-42",
                "company_name": "Globex",
                "contact_name": "Hank Scorpio",
                "contact_email": "hank@globex-corp.com",
                "plan": "enterprise",
            },
        )
        assert started.status_code == 201, started.text
        view = wait_for_stage(support, "onboarding-c-42", "awaiting_milestones")
        assert view["state"]["stage"] == "awaiting_milestones", view

        found = subprocess.run(
            [
                str(BIN_DIR / "temporal"),
                "workflow",
                "list",
                "--address",
                temporal,
                "--query",
                "CrmProcess='onboarding' AND CustomerId='c-42'",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "onboarding-c-42" in found.stdout

        mail = subprocess.run(
            [str(BIN_DIR / "crmflow"), "mail", "--maildir", str(tmp_path / ".crmflow" / "mail")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert "hank@globex-corp.com" in mail.stdout
        assert "Welcome to crmflow, Globex" in mail.stdout

        sink_url = f"http://127.0.0.1:{config['webhook_sink']['port']}"
        admin = httpx.Client(base_url=api_url, timeout=10, headers=as_role(keys, "admin"))
        created = admin.post(
            "/v1/webhooks", json={"url": f"{sink_url}/hooks/crm", "event_types": ["*"]}
        )
        assert created.status_code == 201, created.text
        body = b'{"type": "ticket.breached", "data": {}}'
        signed = signed_headers([signing_key(created.json()["secret"])], "msg_check_1", body)
        delivered = httpx.post(f"{sink_url}/hooks/crm", content=body, headers=signed)
        assert delivered.status_code == 200, delivered.text
        webhooks = subprocess.run(
            [str(BIN_DIR / "crmflow"), "webhooks", "--state", str(tmp_path / ".crmflow")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert webhooks.stdout.splitlines()[-1].split()[2:] == [
            "/hooks/crm",
            "msg_check_1",
            "ticket.breached",
            "yes",
            "200",
        ]

        worker_metrics = httpx.get(f"http://127.0.0.1:{config['worker']['metrics_port']}/metrics")
        assert "temporal_workflow_completed" in worker_metrics.text or (
            "temporal_activity_execution_latency" in worker_metrics.text
        )
        ui_codec = f"/codec/key/{keys['support']}/decode"
        assert anonymous.post(ui_codec, json={"payloads": []}).status_code == 200
        assert anonymous.post(f"/codec/key/{keys['service']}/decode", json={}).status_code == 403
        api_metrics = support.get("/metrics").text
        assert 'crmflow_process_starts_total{process="onboarding",result="created"} 1.0' in (
            api_metrics
        )

        [worker] = children(stack.pid, "devstack.cli worker")
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while children(stack.pid, "devstack.cli worker") in ([], [worker]):
            assert time.monotonic() < deadline, "the supervisor did not restart the worker"
            time.sleep(0.2)

    assert (tmp_path / ".crmflow" / "temporal.db").exists()

    with (
        running_stack(tmp_path),
        httpx.Client(base_url=api_url, timeout=10, headers=as_role(keys, "support")) as support,
    ):
        view = support.get("/v1/processes/onboarding-c-42").json()
        assert view["status"] == "running"
        assert view["state"]["stage"] == "awaiting_milestones"
        assert view["run_id"] == started.json()["run_id"]
        assert "nudge_day_3" in view["state"]["due"]


def test_an_invalid_stack_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    config["smtp_sink"]["prot"] = 25
    (tmp_path / "temporal-dev.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(BIN_DIR / "crmflow"), "dev", "--config", str(tmp_path / "temporal-dev.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "smtp_sink.prot: Extra inputs are not permitted" in result.stderr
