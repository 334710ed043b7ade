"""Process starts through the API vs raw ``client.start_workflow``, side by side.

    .venv/bin/python -m bench.starts [--count 1000] [--concurrency 16] [--rounds 2] [--persisted]

Starts its own Temporal dev server (in memory, or file-backed with WAL with
``--persisted``) and ``crmflow api``; no worker polls the task queue, so only
the start path is measured. Each round starts ``count`` onboardings through
``POST /v1/onboardings`` and ``count`` through the SDK with the same input,
id policy and search attributes, with ``concurrency`` requests in flight;
rounds alternate so both see the same server state. Prints starts/s of each
and the API's share of the raw rate (issue target: at least 85%).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from bench.harness import api_server, bench_api_key, crmflow_env, temporal_server
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.onboarding import OnboardingInput, OnboardingSchedule, onboarding_id


async def timed(count: int, concurrency: int, start_one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``start_one(0..count-1)`` with ``concurrency`` in flight; returns starts per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def drain() -> None:
        while not queue.empty():
            await start_one(queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(drain() for _ in range(concurrency)))
    return count / (time.perf_counter() - began)


def customer(prefix: str, i: int) -> dict[str, str]:
    return {
        "customer_id": f"{prefix}-{i}",
        "company_name": "Bench Co",
        "contact_name": "Bea Bench",
        "contact_email": f"bea{i}@bench-co.io",
        "plan": "growth",
    }


async def run(count: int, concurrency: int, rounds: int, persisted: bool) -> None:
    task_queue = f"bench-starts-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        db_file = Path(scratch) / "temporal.db" if persisted else None
        with temporal_server(db_file) as address:
            key = bench_api_key(Path(scratch))
            env = crmflow_env(address, task_queue, Path(scratch))
            with api_server(env) as base_url:
                client = await Client.connect(address)
                limits = httpx.Limits(max_connections=concurrency)
                async with httpx.AsyncClient(
                    base_url=base_url, limits=limits, headers={"Authorization": f"Bearer {key}"}
                ) as http:

                    async def via_api(prefix: str, i: int) -> None:
                        response = await http.post("/v1/onboardings", json=customer(prefix, i))
                        if response.status_code != 201:
                            raise RuntimeError(f"{response.status_code} {response.text}")

                    async def via_sdk(prefix: str, i: int) -> None:
                        body = customer(prefix, i)
                        await client.start_workflow(
                            "OnboardingWorkflow",
                            OnboardingInput(
                                **body, csm_pool="csm-smb", schedule=OnboardingSchedule()
                            ),
                            id=onboarding_id(body["customer_id"]),
                            task_queue=task_queue,
                            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                            search_attributes=TypedSearchAttributes(
                                [
                                    SearchAttributePair(PROCESS, "onboarding"),
                                    SearchAttributePair(CUSTOMER_ID, body["customer_id"]),
                                    SearchAttributePair(STAGE, "starting"),
                                ]
                            ),
                            static_summary=f"Onboarding of customer {body['customer_id']}",
                        )

                    await timed(50, concurrency, lambda i: via_api("warm-api", i))
                    await timed(50, concurrency, lambda i: via_sdk("warm-sdk", i))
                    raw: list[float] = []
                    api: list[float] = []
                    for r in range(rounds):
                        raw.append(await timed(count, concurrency, partial(via_sdk, f"sdk{r}")))
                        api.append(await timed(count, concurrency, partial(via_api, f"api{r}")))
                        print(f"round {r + 1}: raw SDK {raw[-1]:.0f}/s, API {api[-1]:.0f}/s")
    raw_rate, api_rate = statistics.median(raw), statistics.median(api)
    server = "file-backed (WAL)" if persisted else "in-memory"
    print(
        f"{server} dev server, {count} starts x {rounds} rounds, concurrency {concurrency}: "
        f"raw SDK {raw_rate:.0f} starts/s, API {api_rate:.0f} starts/s, "
        f"API = {100 * api_rate / raw_rate:.0f}% of raw (target >= 85%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--persisted", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.concurrency, args.rounds, args.persisted))


if __name__ == "__main__":
    main()
