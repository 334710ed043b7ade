"""Processes the benchmarks run against: a Temporal dev server, the API, a worker.

Each is a real subprocess on free ports, as in production, so the benchmark
process only drives load and measures. Everything is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from temporalio.client import Client

from crm.platform.principals import new_api_key, write_api_keys_file
from workflows.common import SEARCH_ATTRIBUTES
from workflows.onboarding_types import OnboardingInput, onboarding_id

BIN_DIR = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def process(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess, stopped with SIGTERM (then SIGKILL) on exit; output to a log file."""
    with tempfile.NamedTemporaryFile(prefix="crmflow-bench-", suffix=".log", delete=False) as log:
        child = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


@contextlib.contextmanager
def temporal_server(db_file: Path | None = None) -> Iterator[str]:
    """A dev server (in memory, or persisted to ``db_file`` with WAL); yields its address."""
    port = free_port()
    argv = [
        str(BIN_DIR / "temporal"),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
    ]
    for key in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", f"{key.name}=Keyword"]
    if db_file is not None:
        argv += ["--db-filename", str(db_file)]
        argv += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    with process(argv):
        wait_for_port(port)
        address = f"127.0.0.1:{port}"
        wait_until_serving(address)
        yield address


def wait_until_serving(address: str, timeout: float = 60) -> None:
    """Wait until the server at ``address`` reports SERVING: its port opens before its frontend
    is healthy, and a client connecting in between fails."""
    deadline = time.monotonic() + timeout
    health = [str(BIN_DIR / "temporal"), "operator", "cluster", "health", "--address", address]
    while time.monotonic() < deadline:
        check = subprocess.run(health, capture_output=True, text=True, timeout=10, check=False)
        if check.returncode == 0 and "SERVING" in check.stdout:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the Temporal server at {address} is not healthy after {timeout} s")


def bench_api_key(state_dir: Path) -> str:
    """A service + support key for the benchmark, in ``state_dir/api-keys.yml``."""
    key, record = new_api_key("bench", ("service", "support"))
    write_api_keys_file(state_dir / "api-keys.yml", [record])
    return key


def crmflow_env(
    temporal_address: str, task_queue: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """``CRMFLOW_*`` settings for a worker or API of the benchmark (no start rate limit)."""
    return {
        "CRMFLOW_API_KEYS_FILE": str(state_dir / "api-keys.yml"),
        "CRMFLOW_START_RATE_PER_SECOND": "1000000",
        "CRMFLOW_START_BURST": "1000000",
        "CRMFLOW_TEMPORAL_ADDRESS": temporal_address,
        "CRMFLOW_TASK_QUEUE": task_queue,
        "CRMFLOW_DATABASE_URL": f"sqlite:///{state_dir / 'crm.db'}",
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",
        "CRMFLOW_LOG_LEVEL": "WARNING",
        **extra,
    }


@contextlib.contextmanager
def api_server(env: dict[str, str]) -> Iterator[str]:
    """``crmflow api`` on a free port; yields its base URL."""
    port = free_port()
    with process(
        [sys.executable, "-m", "devstack.cli", "api"],
        {**env, "CRMFLOW_API_PORT": str(port)},
    ):
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``crmflow worker``."""
    with process([sys.executable, "-m", "devstack.cli", "worker"], env) as child:
        yield child


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def onboarding_stack(
    state: Path, task_queue: str, *, persisted: bool, **extra_env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A dev server, SMTP sink, enrichment provider (no rate limit) and ``crmflow worker``.

    The server is file-backed in ``state`` when ``persisted``; yields its
    address and the worker's process.
    """
    smtp_port, provider_port = free_port(), free_port()
    crmflow = [sys.executable, "-m", "devstack.cli"]
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(temporal_server(state / "temporal.db" if persisted else None))
        stack.enter_context(
            process([*crmflow, "smtp-sink", "--port", str(smtp_port), "--maildir", f"{state}/mail"])
        )
        stack.enter_context(
            process(
                [
                    *crmflow,
                    "enrichment-provider",
                    "--port",
                    str(provider_port),
                    "--rate",
                    "100000",
                    "--burst",
                    "100000",
                ]
            )
        )
        wait_for_port(smtp_port)
        wait_for_port(provider_port)
        env = crmflow_env(
            address,
            task_queue,
            state,
            CRMFLOW_SMTP_PORT=str(smtp_port),
            CRMFLOW_ENRICHMENT_URL=f"http://127.0.0.1:{provider_port}",
            **extra_env,
        )
        yield address, stack.enter_context(worker(env))


async def start_onboarding(client: Client, task_queue: str, customer_id: str) -> None:
    """Start the onboarding of ``customer_id`` (growth plan) on ``task_queue``."""
    await client.start_workflow(
        "OnboardingWorkflow",
        OnboardingInput(
            customer_id=customer_id,
            company_name="Bench Co",
            contact_name="Bea Bench",
            contact_email=f"bea.{customer_id}@bench-co.io",
            plan="growth",
            csm_pool="csm-smb",
        ),
        id=onboarding_id(customer_id),
        task_queue=task_queue,
    )


def child_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) each direct child process has used, by role (Linux).

    Roles: ``server`` (the Temporal CLI), ``worker`` (any worker), ``services``
    (SMTP sink, enrichment provider), ``api``. Read from ``/proc``; children that
    have exited are not counted.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) != os.getpid():  # fields[1] is the parent pid
            continue
        role = _role(cmdline)
        used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def _role(cmdline: str) -> str:
    if "server start-dev" in cmdline:
        return "server"
    if "smtp-sink" in cmdline or "enrichment-provider" in cmdline:
        return "services"
    if " api" in cmdline:
        return "api"
    return "worker"


def cpu_used_since(before: dict[str, float]) -> str:
    """``server 12.3 s, worker 8.1 s, ...``: CPU each role used since ``before``."""
    now = child_cpu_seconds()
    return ", ".join(f"{role} {now[role] - before.get(role, 0.0):.1f} s" for role in sorted(now))
