"""Process starts through the API vs raw ``client.start_workflow``, side by side.

    .venv/bin/python -m bench.starts [--count 1000] [--concurrency 16] [--rounds 2] [--persisted]
                                     [--http-client aiohttp|httpx]

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
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import aiohttp
import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from bench.harness import api_server, bench_api_key, crmflow_env, temporal_server
from crm.domain.schedules import OnboardingSchedule
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.onboarding_types import OnboardingInput, onboarding_id


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


Post = Callable[[str, dict[str, str]], Awaitable[tuple[int, str]]]


@contextlib.asynccontextmanager
async def http_poster(
    http_client: str, base_url: str, key: str, concurrency: int
) -> AsyncIterator[Post]:
    """``post(path, json) -> (status, text)`` over ``concurrency`` kept-alive connections.

    The load generator shares the two cores with the server and the API, so
    its own cost per request lowers what it measures: aiohttp's is about a
    quarter of httpx's. The raw path's caller is the SDK's client in the same
    process, whose cost per start is lower still.
    """
    headers = {"Authorization": f"Bearer {key}"}
    if http_client == "httpx":
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, headers=headers) as http:

            async def post_httpx(path: str, body: dict[str, str]) -> tuple[int, str]:
                response = await http.post(path, json=body)
                return response.status_code, response.text

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector, headers=headers) as session:

        async def post_aiohttp(path: str, body: dict[str, str]) -> tuple[int, str]:
            async with session.post(path, json=body) as response:
                return response.status, await response.text()

        yield post_aiohttp


def customer(prefix: str, i: int) -> dict[str, str]:
    return {
        "customer_id": f"{prefix}-{i}",
        "company_name": "Bench Co",
        "contact_name": "Bea Bench",
        "contact_email": f"bea{i}@bench-co.io",
        "plan": "growth",
    }


async def run(count: int, concurrency: int, rounds: int, persisted: bool, http_client: str) -> None:
    task_queue = f"bench-starts-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        db_file = Path(scratch) / "temporal.db" if persisted else None
        with temporal_server(db_file) as address:
            key = bench_api_key(Path(scratch))
            env = crmflow_env(address, task_queue, Path(scratch))
            with api_server(env) as base_url:
                client = await Client.connect(address)
                async with http_poster(http_client, base_url, key, concurrency) as post:

                    async def via_api(prefix: str, i: int) -> None:
                        status, text = await post("/v1/onboardings", customer(prefix, i))
                        if status != 201:
                            raise RuntimeError(f"{status} {text}")

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
                        # Each path goes first in every other round: the server slows a
                        # little as it fills, and neither path should always get the
                        # fuller server.
                        sdk_round = partial(timed, count, concurrency, partial(via_sdk, f"sdk{r}"))
                        api_round = partial(timed, count, concurrency, partial(via_api, f"api{r}"))
                        if r % 2 == 0:
                            raw.append(await sdk_round())
                            api.append(await api_round())
                        else:
                            api.append(await api_round())
                            raw.append(await sdk_round())
                        print(f"round {r + 1}: raw SDK {raw[-1]:.0f}/s, API {api[-1]:.0f}/s")
    raw_rate, api_rate = statistics.median(raw), statistics.median(api)
    server = "file-backed (WAL)" if persisted else "in-memory"
    print(
        f"{server} dev server, {count} starts x {rounds} rounds, concurrency {concurrency}, "
        f"HTTP load from {http_client}: "
        f"raw SDK {raw_rate:.0f} starts/s, API {api_rate:.0f} starts/s, "
        f"API = {100 * api_rate / raw_rate:.0f}% of raw (target >= 85%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--persisted", action="store_true")
    parser.add_argument(
        "--http-client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="the load generator's HTTP client (httpx costs it ~4x the CPU per request)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.count, args.concurrency, args.rounds, args.persisted, args.http_client))


if __name__ == "__main__":
    main()
