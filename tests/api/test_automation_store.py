"""The automation tables on SQLite and PostgreSQL: versions, states, event claims under races."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from crm.automations.validation import parse_definition
from crm.domain.automation import AutomationDefinition
from crm.policy import Policy
from crm.store.automations import (
    CLAIM_EXPIRES_AFTER,
    AutomationStateError,
    answer_event,
    change_state,
    claim_event,
    definition_of,
    enrolling_on,
    give_up_event,
    receipt_of,
    save_version,
    versions_of,
)
from crm.store.db import Database
from crm.store.models import RecordEventReceipt, utcnow
from tests.api.test_automations import definition
from tests.db.test_database import db  # noqa: F401  (the fixture: each test on both databases)


def parsed(**overrides: object) -> AutomationDefinition:
    return parse_definition(definition("won-deals", **overrides), Policy())


async def test_saving_makes_a_version_per_change_per_tenant(db: Database) -> None:  # noqa: F811
    first = parsed()
    _, v1, new = await db.run(lambda s: save_version(s, None, first, {"v": 1}, "ann"))
    assert (v1.version, new) == (1, True)
    _, same, new = await db.run(lambda s: save_version(s, None, parsed(), {"v": 1}, "ann"))
    assert (same.version, new) == (1, False)
    changed = parsed(name="Won deals, again")
    automation, v2, new = await db.run(lambda s: save_version(s, None, changed, {}, "ann"))
    assert (v2.version, automation.latest_version, new) == (2, 2, True)
    _, other, _ = await db.run(lambda s: save_version(s, "a", first, {}, "bo"))
    assert other.version == 1
    stored = await db.run(lambda s: versions_of(s, None, "won-deals"), write=False)
    assert [v.version for v in stored] == [1, 2]
    assert definition_of(stored[0]) == first


async def test_only_activated_automations_enrol_with_the_version_activated(
    db: Database,  # noqa: F811
) -> None:
    await db.run(lambda s: save_version(s, None, parsed(), {}, "ann"))
    await db.run(lambda s: save_version(s, None, parsed(name="v2"), {}, "ann"))
    assert await db.run(lambda s: enrolling_on(s, None, "deal"), write=False) == []
    await db.run(lambda s: change_state(s, None, "won-deals", "activate", 1))
    [automation] = await db.run(lambda s: enrolling_on(s, None, "deal"), write=False)
    definition = automation.definition
    assert (automation.state, automation.active_version, definition.name) == (
        "active",
        1,
        parsed().name,
    )
    assert await db.run(lambda s: enrolling_on(s, "a", "deal"), write=False) == []
    # A later version on another object changes nothing until it is activated.
    await db.run(lambda s: save_version(s, None, parsed(object="ticket"), {}, "ann"))
    assert len(await db.run(lambda s: enrolling_on(s, None, "deal"), write=False)) == 1
    assert await db.run(lambda s: enrolling_on(s, None, "ticket"), write=False) == []
    await db.run(lambda s: change_state(s, None, "won-deals", "activate"))
    [on_tickets] = await db.run(lambda s: enrolling_on(s, None, "ticket"), write=False)
    ticket_definition = on_tickets.definition
    assert (on_tickets.active_version, ticket_definition.object) == (3, "ticket")
    await db.run(lambda s: change_state(s, None, "won-deals", "archive"))
    with pytest.raises(AutomationStateError):
        await db.run(lambda s: change_state(s, None, "won-deals", "activate"))


async def test_of_concurrent_claims_of_an_event_exactly_one_wins(
    db: Database,  # noqa: F811
) -> None:
    claims = await asyncio.gather(
        *(db.run(lambda s: claim_event(s, "a", "ev-1", "f" * 64)) for _ in range(8))
    )
    assert sum(claim.claimed for claim in claims) == 1
    assert len({claim.receipt.id for claim in claims}) == 1
    receipt_id = claims[0].receipt.id
    assert receipt_id is not None
    await db.run(lambda s: answer_event(s, receipt_id, {"enrolled": ["run"]}))
    again = await db.run(lambda s: claim_event(s, "a", "ev-1", "f" * 64))
    assert (again.claimed, again.receipt.answer) == (False, {"enrolled": ["run"]})
    other_tenant = await db.run(lambda s: claim_event(s, None, "ev-1", "f" * 64))
    assert other_tenant.claimed


async def test_a_claim_given_up_or_abandoned_passes_to_the_next_request(
    db: Database,  # noqa: F811
) -> None:
    first = await db.run(lambda s: claim_event(s, None, "ev-2", "f" * 64))
    first_id = first.receipt.id
    assert first_id is not None
    await db.run(lambda s: give_up_event(s, first_id))
    assert await db.run(lambda s: receipt_of(s, first_id), write=False) is None
    second = await db.run(lambda s: claim_event(s, None, "ev-2", "f" * 64))
    assert second.claimed

    long_ago = utcnow() - CLAIM_EXPIRES_AFTER - timedelta(seconds=1)
    await db.run(
        lambda s: s.exec(
            update(RecordEventReceipt)
            .where(RecordEventReceipt.id == second.receipt.id)  # type: ignore[arg-type]
            .values(created_at=long_ago)
        )
    )
    takers = await asyncio.gather(
        *(db.run(lambda s: claim_event(s, None, "ev-2", "f" * 64)) for _ in range(4))
    )
    assert sum(claim.claimed for claim in takers) == 1
