"""``crmflow dev``: start, supervise and stop the local stack described in temporal-dev.yml.

The stack is the Temporal CLI dev server (file-backed, with the Web UI and
crmflow's search attributes), the SMTP sink, the enrichment provider, the
webhook sink, the worker(s) and the API process(es) (``worker.replicas`` and
``api.replicas``, each replica on the next port). They start in that order,
each once the one before it accepts connections. A process that exits on its
own is restarted with a growing delay. SIGINT (Ctrl-C) or SIGTERM stops them
in reverse order, so the worker and the API finish their work before the
server goes away.
Each process's output is printed with its name in front.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crm.platform.codec import new_codec_key
from crm.platform.principals import Role, load_api_keys_file, new_api_key, write_api_keys_file
from crm.store.webhooks import new_secret
from processes import search_attributes as registered_search_attributes

RESTART_DELAY_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 35.0


class DevStackError(RuntimeError):
    """The stack cannot start: an invalid configuration or a service that never came up."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemporalSection(_Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    ui_port: int | None = 8233
    db_filename: str = "temporal.db"
    sqlite_pragmas: dict[str, str] = Field(default_factory=dict)
    search_attributes: dict[
        str, Literal["Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList"]
    ] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warn", "error"] = "error"

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class SmtpSinkSection(_Section):
    host: str = "127.0.0.1"
    port: int = 1025
    maildir: str = "mail"


class EnrichmentProviderSection(_Section):
    host: str = "127.0.0.1"
    port: int = 8100
    rate_per_second: float = Field(default=5.0, gt=0)
    burst: int = Field(default=10, ge=1)


class WebhookSinkSection(_Section):
    host: str = "127.0.0.1"
    port: int = 8025


class ApiSection(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    #: API processes; replica ``i`` (from 0) listens on ``port + i``.
    replicas: int = Field(default=1, ge=1, le=16)

    @property
    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.replicas)]


class WorkerSection(_Section):
    task_queue: str = "crmflow"
    #: Worker processes on the task queue; replica ``i`` (from 0) serves its metrics on
    #: ``metrics_port + i`` and its probes on ``health_port + i``.
    replicas: int = Field(default=1, ge=1, le=16)
    metrics_port: int | None = 9464
    health_port: int | None = None


class DevStackConfig(_Section):
    """The contents of temporal-dev.yml; relative paths are relative to its folder."""

    state_dir: str = ".crmflow"
    temporal: TemporalSection = Field(default_factory=TemporalSection)
    smtp_sink: SmtpSinkSection = Field(default_factory=SmtpSinkSection)
    enrichment_provider: EnrichmentProviderSection = Field(
        default_factory=EnrichmentProviderSection
    )
    webhook_sink: WebhookSinkSection = Field(default_factory=WebhookSinkSection)
    api: ApiSection = Field(default_factory=ApiSection)
    worker: WorkerSection = Field(default_factory=WorkerSection)
    database_url: str = "sqlite:///.crmflow/crm.db"
    operator_email: str = "ops@example.com"
    policy_file: str | None = None
    encrypt_payloads: bool = True

    @model_validator(mode="after")
    def _ports_apart(self) -> DevStackConfig:
        ports = self.listening_ports()
        taken: dict[int, str] = {}
        for name, port in ports:
            if port in taken:
                raise ValueError(f"{name} and {taken[port]} both use port {port}")
            taken[port] = name
        return self

    def listening_ports(self) -> list[tuple[str, int]]:
        """Every port the stack listens on, by the setting it comes from."""
        ports = [("temporal.address", self.temporal.port)]
        if self.temporal.ui_port is not None:
            ports.append(("temporal.ui_port", self.temporal.ui_port))
        ports += [
            ("smtp_sink.port", self.smtp_sink.port),
            ("enrichment_provider.port", self.enrichment_provider.port),
            ("webhook_sink.port", self.webhook_sink.port),
        ]
        ports += [(f"api.port (replica {i + 1})", p) for i, p in enumerate(self.api.ports)]
        for setting in ("metrics_port", "health_port"):
            first = getattr(self.worker, setting)
            if first is not None:
                ports += [
                    (f"worker.{setting} (replica {i + 1})", first + i)
                    for i in range(self.worker.replicas)
                ]
        return ports


def load_config(path: Path) -> DevStackConfig:
    """Read and validate ``path``; raises DevStackError naming the bad field."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise DevStackError(f"cannot read {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise DevStackError(f"{path} is not valid YAML: {err}") from err
    try:
        return DevStackConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise DevStackError(f"{path}: {problems}") from err


@dataclass
class Service:
    """One process of the stack and how to tell it is up."""

    name: str
    argv: list[str]
    ready_at: tuple[str, int]
    env: dict[str, str] = field(default_factory=dict)


def plan_services(config: DevStackConfig, root: Path) -> list[Service]:
    """The stack's processes in start order, with their command lines and environment."""
    state = root / config.state_dir
    bin_dir = Path(sys.executable).parent
    temporal = config.temporal
    server_argv = [
        str(bin_dir / "temporal"),
        "server",
        "start-dev",
        "--ip",
        temporal.host,
        "--port",
        str(temporal.port),
        "--namespace",
        temporal.namespace,
        "--db-filename",
        str(state / temporal.db_filename),
        "--log-level",
        temporal.log_level,
    ]
    if temporal.ui_port is None:
        server_argv.append("--headless")
    else:
        server_argv += ["--ui-port", str(temporal.ui_port)]
    for pragma, value in temporal.sqlite_pragmas.items():
        server_argv += ["--sqlite-pragma", f"{pragma}={value}"]
    registered = {key.name: "Keyword" for key in registered_search_attributes()}
    for name, kind in {**registered, **temporal.search_attributes}.items():
        server_argv += ["--search-attribute", f"{name}={kind}"]
    keys = dev_api_keys(state)
    if config.encrypt_payloads and temporal.ui_port is not None:
        server_argv += [
            "--ui-codec-endpoint",
            f"http://{config.api.host}:{config.api.port}/codec/key/{keys['support']}",
        ]

    crmflow = [sys.executable, "-m", "devstack.cli"]
    sink = config.smtp_sink
    provider = config.enrichment_provider
    webhook_sink = config.webhook_sink
    app_env = {
        "CRMFLOW_API_REPLICAS": str(config.api.replicas),
        "CRMFLOW_TEMPORAL_ADDRESS": temporal.address,
        "CRMFLOW_TEMPORAL_NAMESPACE": temporal.namespace,
        "CRMFLOW_TASK_QUEUE": config.worker.task_queue,
        "CRMFLOW_DATABASE_URL": config.database_url,
        "CRMFLOW_SMTP_HOST": sink.host,
        "CRMFLOW_SMTP_PORT": str(sink.port),
        "CRMFLOW_ENRICHMENT_URL": f"http://{provider.host}:{provider.port}",
        # The webhook sink listens inside the network, where outbound calls are refused:
        # its host and port only (not the API or Temporal on the same host) are let through.
        "CRMFLOW_OUTBOUND_ALLOWED_HOSTS": json.dumps([f"{webhook_sink.host}:{webhook_sink.port}"]),
        "CRMFLOW_OPERATOR_EMAIL": config.operator_email,
        "CRMFLOW_API_HOST": config.api.host,
        "CRMFLOW_API_PORT": str(config.api.port),
    }
    app_env["CRMFLOW_API_KEYS_FILE"] = str(state / "api-keys.yml")
    if config.encrypt_payloads:
        app_env["CRMFLOW_CODEC_KEYS"] = dev_codec_keys(state)
    app_env["CRMFLOW_SEALING_KEYS"] = dev_codec_keys(state)
    app_env["CRMFLOW_AUTOMATION_HTTP_SECRET"] = dev_http_secret(state)
    if config.policy_file:
        app_env["CRMFLOW_POLICY_FILE"] = str(root / config.policy_file)
    # The webhook sink verifies signatures with the endpoints' secrets, sealed in the database,
    # and with the one the automations' http steps sign with.
    sink_env: dict[str, str] = {
        name: app_env[name]
        for name in (
            "CRMFLOW_DATABASE_URL",
            "CRMFLOW_SEALING_KEYS",
            "CRMFLOW_AUTOMATION_HTTP_SECRET",
        )
        if name in app_env
    }
    return [
        Service("temporal", server_argv, (temporal.host, temporal.port)),
        Service(
            "smtp-sink",
            [
                *crmflow,
                "smtp-sink",
                "--host",
                sink.host,
                "--port",
                str(sink.port),
                "--maildir",
                str(state / sink.maildir),
            ],
            (sink.host, sink.port),
        ),
        Service(
            "enrichment",
            [
                *crmflow,
                "enrichment-provider",
                "--host",
                provider.host,
                "--port",
                str(provider.port),
                "--rate",
                str(provider.rate_per_second),
                "--burst",
                str(provider.burst),
            ],
            (provider.host, provider.port),
        ),
        Service(
            "webhook-sink",
            [
                *crmflow,
                "webhook-sink",
                "--host",
                webhook_sink.host,
                "--port",
                str(webhook_sink.port),
                "--state",
                str(state),
            ],
            (webhook_sink.host, webhook_sink.port),
            sink_env,
        ),
        *_worker_services(config, crmflow, app_env),
        *(
            Service(
                _replica("api", i),
                [*crmflow, "api"],
                (config.api.host, port),
                {**app_env, "CRMFLOW_API_PORT": str(port)},
            )
            for i, port in enumerate(config.api.ports)
        ),
    ]


def _replica(name: str, index: int) -> str:
    return name if index == 0 else f"{name}-{index + 1}"


def _worker_services(
    config: DevStackConfig, crmflow: list[str], app_env: dict[str, str]
) -> list[Service]:
    """One service per worker replica, each with metrics and probes on ports of its own."""
    worker = config.worker
    temporal = config.temporal
    services = []
    for i in range(worker.replicas):
        env = {
            **app_env,
            "CRMFLOW_WORKER_METRICS_ADDRESS": (
                f"127.0.0.1:{worker.metrics_port + i}" if worker.metrics_port else ""
            ),
            "CRMFLOW_WORKER_HEALTH_ADDRESS": (
                f"127.0.0.1:{worker.health_port + i}" if worker.health_port else ""
            ),
        }
        ready_at = (temporal.host, temporal.port)
        services.append(Service(_replica("worker", i), [*crmflow, "worker"], ready_at, env))
    return services


def dev_codec_keys(state: Path) -> str:
    """The dev stack's payload encryption key, made on first use and kept in ``state``."""
    path = state / "codec-keys"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_codec_key("dev-1") + "\n")
    return path.read_text().strip()


def dev_http_secret(state: Path) -> str:
    """The secret that signs automations' ``http`` steps on the dev stack, made on first use."""
    path = state / "automation-http-secret"
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(new_secret() + "\n")
    return path.read_text().strip()


DEV_PRINCIPALS: dict[str, tuple[tuple[Role, ...], str | None]] = {
    "service": (("service",), None),
    "support": (("support",), None),
    "approver": (("approver",), "mgr-hana"),
    "admin": (("admin",), None),
}


def dev_api_keys(state: Path) -> dict[str, str]:
    """One API key per role of ``DEV_PRINCIPALS`` for the dev stack, made on first use.

    The hashes go to ``api-keys.yml`` (the API's keys file); the keys themselves
    to ``dev-api-keys.yml`` (owner-only), so the stack can print them at start.
    A state directory made before a role existed gets a key for it; the keys
    it already has stay valid.
    """
    plain = state / "dev-api-keys.yml"
    hashes = state / "api-keys.yml"
    keys: dict[str, str] = yaml.safe_load(plain.read_text()) if plain.exists() else {}
    missing = {role: spec for role, spec in DEV_PRINCIPALS.items() if role not in keys}
    if not missing:
        return keys
    records = list(load_api_keys_file(hashes).values()) if hashes.exists() else []
    for role, (roles, staff_id) in missing.items():
        key, record = new_api_key(f"dev-{role}", roles, staff_id=staff_id)
        keys[role] = key
        records.append(record)
    write_api_keys_file(hashes, records)
    plain.touch(mode=0o600)
    plain.write_text(yaml.safe_dump(keys))
    return keys


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when the supervisor dies, even by SIGKILL."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class _Running:
    """A started service: its process, its output pump and its restart back-off."""

    def __init__(self, service: Service, root: Path, say: Callable[[str], None]) -> None:
        self.service = service
        self.restart_delay = 1.0
        self._root = root
        self._say = say
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started_at = time.monotonic()
        process = subprocess.Popen(
            self.service.argv,
            cwd=self._root,
            env={**os.environ, **self.service.env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops in order
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()
        return process

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._say(f"[{self.service.name}] {line.decode(errors='replace').rstrip()}")

    def restart(self) -> None:
        """Start the service again; the delay before the next restart doubles, unless
        the last run was up long enough to count as healthy."""
        if time.monotonic() - self.started_at > HEALTHY_AFTER_SECONDS:
            self.restart_delay = 1.0
        else:
            self.restart_delay = min(self.restart_delay * 2, RESTART_DELAY_MAX_SECONDS)
        self.process = self._spawn()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._say(f"[{self.service.name}] did not stop in {STOP_TIMEOUT_SECONDS:g} s; killing")
            self.process.kill()
            self.process.wait()


def _is_worker(service: Service) -> bool:
    return service.name == "worker" or service.name.startswith("worker-")


def wait_for_port(address: tuple[str, int], timeout: float, alive: Callable[[], bool]) -> bool:
    """Poll until ``address`` accepts a TCP connection; False on timeout or when not ``alive``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class DevStack:
    """The running stack; ``run()`` blocks until a stop signal and returns an exit code."""

    def __init__(self, config: DevStackConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.services = plan_services(config, root)
        self._running: list[_Running] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)

    def request_stop(self, signum: int = signal.SIGTERM, _frame: object = None) -> None:
        self._stop.set()

    def run(self) -> int:
        (self.root / self.config.state_dir).mkdir(parents=True, exist_ok=True)
        try:
            self._start_all()
            self._banner()
            self._supervise()
            return 0
        except DevStackError as err:
            self.say(f"crmflow dev: {err}")
            return 1
        finally:
            self._stop_all()

    def _start_all(self) -> None:
        for service in self.services:
            if self._stop.is_set():
                return
            self._check_port_free(service)
            running = _Running(service, self.root, self.say)
            self._running.append(running)
            if _is_worker(service):
                continue  # it connects out; nothing to wait for
            if not wait_for_port(service.ready_at, STARTUP_TIMEOUT_SECONDS, self._alive(running)):
                if self._stop.is_set():
                    return
                raise DevStackError(
                    f"{service.name} did not start listening on "
                    f"{service.ready_at[0]}:{service.ready_at[1]} (see its output above)"
                )

    def _alive(self, running: _Running) -> Callable[[], bool]:
        return lambda: running.process.poll() is None and not self._stop.is_set()

    def _check_port_free(self, service: Service) -> None:
        if _is_worker(service):
            return
        try:
            with socket.create_connection(service.ready_at, timeout=0.5):
                pass
        except OSError:
            return
        host, port = service.ready_at
        raise DevStackError(
            f"{host}:{port} is already in use, so {service.name} cannot start; "
            "is another crmflow dev running? Change the port in temporal-dev.yml."
        )

    def _banner(self) -> None:
        if self._stop.is_set():
            return
        temporal, api = self.config.temporal, self.config.api
        lines = [
            "crmflow dev stack is up:",
            f"  Temporal    {temporal.address} (namespace {temporal.namespace})",
        ]
        if temporal.ui_port is not None:
            lines.append(f"  Web UI      http://{temporal.host}:{temporal.ui_port}")
        lines += [
            f"  API         http://{api.host}:{port}/docs (metrics at http://{api.host}:{port}/metrics)"
            for port in api.ports
        ]
        lines.append(
            f"  Console     http://{api.host}:{api.port}/console (sign in with the support key)"
        )
        if self.config.worker.replicas > 1:
            lines.append(
                f"  Workers     {self.config.worker.replicas} on task queue "
                f"{self.config.worker.task_queue}"
            )
        lines += [
            f"  SMTP sink   {self.config.smtp_sink.host}:{self.config.smtp_sink.port} "
            "(read it with: crmflow mail)",
            f"  Webhooks    http://{self.config.webhook_sink.host}:{self.config.webhook_sink.port}"
            "/<any path> (read them with: crmflow webhooks; control at /_sink/)",
        ]
        keys = dev_api_keys(self.root / self.config.state_dir)
        lines.append("  API keys (send as 'Authorization: Bearer <key>'):")
        lines += [f"    {role:<9} {key}" for role, key in keys.items()]
        lines.append("  Ctrl-C stops everything.")
        self.say("\n".join(lines))

    def _supervise(self) -> None:
        due: dict[str, float] = {}
        while not self._stop.wait(0.5):
            for running in self._running:
                name = running.service.name
                code = running.process.poll()
                if code is None:
                    continue
                if name not in due:
                    self.say(
                        f"[{name}] exited with {code}; restarting in {running.restart_delay:g} s"
                    )
                    due[name] = time.monotonic() + running.restart_delay
                elif time.monotonic() >= due[name]:
                    del due[name]
                    running.restart()

    def _stop_all(self) -> None:
        for running in reversed(self._running):
            running.stop()
        self._running.clear()


def run_dev_stack(config_path: Path) -> int:
    """Entry point of ``crmflow dev``: run the stack in ``config_path`` until a stop signal."""
    try:
        config = load_config(config_path)
    except DevStackError as err:
        print(f"crmflow dev: {err}", file=sys.stderr)
        return 2
    stack = DevStack(config, config_path.resolve().parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stack.request_stop)
    return stack.run()
