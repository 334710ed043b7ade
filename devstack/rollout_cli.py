"""``crmflow rollout ...``: move new runs to a new worker version and tell when an old one drained.

Talks to Temporal with the ``CRMFLOW_TEMPORAL_*`` settings; the deployment is
``CRMFLOW_WORKER_DEPLOYMENT_NAME`` (default ``crmflow``) unless ``--deployment`` names one.
A version can be ramped or made current once one of its workers has polled.

    crmflow rollout status                    every version: status, pinned runs open
    crmflow rollout ramp BUILD_ID PERCENT     send PERCENT of new runs to BUILD_ID (0: stop)
    crmflow rollout current BUILD_ID          send every new run to BUILD_ID
    crmflow rollout drained BUILD_ID [--wait SECONDS]   exit 0 once drained, else 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import NoReturn

from temporalio.common import WorkerDeploymentVersion

from crm.platform.deployments import (
    DEFAULT_DEPLOYMENT,
    RolloutError,
    deployment_versions,
    make_current,
    ramp_version,
    version_state,
)
from crm.platform.settings import get_settings
from crm.platform.temporal import connect

NOT_DRAINED = 3
POLL_SECONDS = 5.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rollout`` and its subcommands to the ``crmflow`` parser."""
    rollout = commands.add_parser(
        "rollout", help="ramp a new worker version, make it current, see old ones drain"
    )
    rollout.add_argument("--deployment", help="the worker deployment (default: from settings)")
    verbs = rollout.add_subparsers(dest="rollout_command", required=True)
    verbs.add_parser("status", help="every version of the deployment and its pinned runs")
    ramp = verbs.add_parser("ramp", help="send a share of new runs to a version")
    ramp.add_argument("build_id")
    ramp.add_argument("percentage", type=float, help="0 to 100; 0 ends the ramp")
    verbs.add_parser("current", help="send every new run to a version").add_argument("build_id")
    drained = verbs.add_parser("drained", help="exit 0 once a version has drained, else 3")
    drained.add_argument("build_id")
    drained.add_argument("--wait", type=float, default=0, help="seconds to wait for it")


def run(args: argparse.Namespace) -> NoReturn:
    """Run a ``crmflow rollout`` command and exit with its code (1 when Temporal refuses).

    The process ends with ``os._exit`` once its output is flushed: the SDK's native
    client threads, torn down by the interpreter's own exit, once crashed the command
    (SIGSEGV) after it had done its work and printed the result.
    """
    try:
        code = asyncio.run(_run(args))
    except RolloutError as err:
        print(f"crmflow rollout: {err}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    deployment = args.deployment or settings.worker_deployment_name or DEFAULT_DEPLOYMENT
    try:
        client = await connect(settings)
    except RuntimeError as err:
        raise RolloutError(f"cannot reach {settings.temporal_address}: {err}") from err
    if args.rollout_command == "status":
        for state in await deployment_versions(client, deployment):
            print(state.describe())
        return 0
    version = WorkerDeploymentVersion(deployment, args.build_id)
    if args.rollout_command == "ramp":
        if not 0 <= args.percentage <= 100:
            print("crmflow rollout: the percentage is from 0 to 100", file=sys.stderr)
            return 2
        await ramp_version(client, version, args.percentage)
        print((await version_state(client, version)).describe())
        return 0
    if args.rollout_command == "current":
        await make_current(client, version)
        print((await version_state(client, version)).describe())
        return 0
    deadline = time.monotonic() + args.wait
    while True:
        state = await version_state(client, version)
        if state.drained or time.monotonic() >= deadline:
            print(state.describe())
            return 0 if state.drained else NOT_DRAINED
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
