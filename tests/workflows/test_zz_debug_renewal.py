from __future__ import annotations
import asyncio
import pytest
from tests.workflows.test_renewal import client, worker, start, now, state_of, renewal_input, days, next_run_id, RenewalWorkflow, ProcessEvent  # noqa

SIGNAL = True
CAN = True

@pytest.mark.usefixtures("worker")
async def test_a(time_skipping_env, client, start, now) -> None:
    term = renewal_input(now + days(95), plan="enterprise", auto_renew=True)
    handle = await start(term)
    await time_skipping_env.sleep(days(36))
    if SIGNAL:
        moved = term.renewal_date + days(45)
        await handle.signal(RenewalWorkflow.event, ProcessEvent("renewal_date_changed", {"renewal_date": moved.isoformat()}))
    await time_skipping_env.sleep(days(1))
    if CAN:
        await next_run_id(handle)


@pytest.mark.usefixtures("worker")
async def test_debug(time_skipping_env, client, start, database, mail_sink, now) -> None:
    term = renewal_input(now + days(20), plan="starter", auto_renew=False)
    handle = await start(term)
    await asyncio.wait_for(handle.result(), 5)
