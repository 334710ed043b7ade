"""How long each report takes on PostgreSQL, on a big data set and one ten times smaller.

    .venv/bin/python -m bench.reports [--audit 1000000] [--sla 200000] [--renewals 50000]
                                     [--others 20000] [--rounds 5] [--smaller 10]

For each size, a scratch schema in the local PostgreSQL (dropped after) is
filled by COPY with ``audit`` audit entries, ``sla`` SLA outcomes,
``renewals`` renewal outcomes (and as many renewal terms, renewing up to a
year after the end, open from then on) and ``others`` each of onboarding, lead and
automation outcomes, spread over the two years before 2026-01-01, a tenth of
them of another tenant; the roll-ups (per day, week and month) are summed from the same facts
as the activities would have written them. Then every report is run
``rounds`` times for each of a 90-day and a 1-year range, by week and by
month, with and without its first dimension. Printed per report: p50, p95
and range of the run times on each size and the big/small ratio of p50s.
Targets (issue 18): p95 <= 200 ms on the big set, big <= 2x small.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from bench.first_phase import POSTGRES
from crm.reports import REPORTS, ReportQuery
from crm.reports.facts import contribution_of, sla_contribution
from crm.reports.rollups import Contribution, bucket_of, merge_counts, merge_histogram
from crm.reports.shape import period_of
from crm.reports.terms import due_contribution
from crm.store.db import Database
from crm.store.models import NO_TENANT, ProcessOutcome, RenewalTerm, SlaOutcome

END = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
OTHER_TENANT = "other"
#: The day the renewals' outlook counts from: the open terms due in the 90 days after END.
TODAY = END.date()


@dataclass(frozen=True)
class Sizes:
    audit: int
    sla: int
    renewals: int
    others: int

    def smaller(self, factor: int) -> Sizes:
        return Sizes(
            self.audit // factor, self.sla // factor, self.renewals // factor, self.others // factor
        )


@contextmanager
def scratch_schema() -> Iterator[str]:
    schema = f"bench_reports_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema
        finally:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _at(rng: random.Random) -> datetime:
    return END - SPAN * rng.random()


def _tenant(rng: random.Random) -> str:
    return OTHER_TENANT if rng.random() < 0.1 else NO_TENANT


def sla_outcomes(count: int, rng: random.Random) -> Iterator[SlaOutcome]:
    for number in range(count):
        first = "breached" if rng.random() < 0.12 else "met"
        resolution = "breached" if rng.random() < 0.2 else "met"
        levels = ["warning"] + (["breach"] if resolution == "breached" else [])
        tenant = _tenant(rng)
        yield SlaOutcome(
            key=f"ticket-{number}/sla_outcome",
            tenant=tenant or None,
            process_id=f"ticket-{number}",
            ticket_id=f"t-{number}",
            customer_id=f"c-{number % 5000}",
            priority=rng.choice(("low", "normal", "high", "urgent")),
            tier=rng.choice(("starter", "growth", "enterprise")),
            assignee_id=f"agent-{rng.randrange(20)}",
            outcome="breached" if "breached" in (first, resolution) else "met",
            first_response=first,
            resolution=resolution,
            first_response_used_seconds=rng.lognormvariate(7.5, 1.0),
            resolution_used_seconds=rng.lognormvariate(10.5, 1.0),
            clocks={},
            escalations=[{"clock": "resolution", "level": level} for level in levels],
            ended_at=_at(rng),
        )


def process_outcomes(sizes: Sizes, rng: random.Random) -> Iterator[ProcessOutcome]:
    kinds: list[tuple[str, int, tuple[str, ...]]] = [
        ("renewal", sizes.renewals, ("renewed", "auto_renewed", "lapsed", "cancelled", "reminded")),
        ("onboarding", sizes.others, ("activated", "activated", "stalled", "cancelled")),
        ("lead", sizes.others, ("routed", "qualified", "nurture", "unresponsive", "bounced")),
        ("automation", sizes.others, ("enrolled", "completed", "goal_met", "step_failed")),
    ]
    for process, count, outcomes in kinds:
        for number in range(count):
            at = _at(rng)
            tenant = _tenant(rng)
            automation = f"flow-{rng.randrange(5)}"
            yield ProcessOutcome(
                key=f"{tenant}/{process}-{number}/offer_outcome@run",
                tenant=tenant,
                process=process,
                process_id=f"{process}-{number}",
                record_id=f"r-{number}",
                customer_id=f"c-{number % 5000}",
                outcome=rng.choice(outcomes),
                occurred_at=at,
                started_at=at - timedelta(days=rng.uniform(3, 40)),
                plan=rng.choice(("starter", "growth", "enterprise")),
                owner_id=f"owner-{rng.randrange(15)}",
                score=rng.randrange(100),
                grade=rng.choice("ABCD"),
                annual_value=round(rng.uniform(500, 50000), 2),
                automation_id=automation if process == "automation" else None,
                automation_version=rng.randrange(1, 4) if process == "automation" else None,
                detail={"nudges_sent": rng.randrange(3)},
            )


def renewal_terms(count: int, rng: random.Random) -> Iterator[RenewalTerm]:
    """A term per renewal, renewing from two years before ``END`` to one after; those due
    before ``END`` have ended (a few days around it either way), the rest are open."""
    for number in range(count):
        renewal_date = _at(rng) + timedelta(days=365 * rng.random())
        ended = renewal_date < END - timedelta(days=rng.uniform(-5, 5))
        tenant = _tenant(rng)
        yield RenewalTerm(
            key=f"{tenant}/renewal-{number}/term1",
            tenant=tenant,
            process_id=f"renewal-{number}",
            term=1,
            renewal_date=renewal_date,
            annual_value=round(rng.uniform(500, 50000), 2),
            plan=rng.choice(("starter", "growth", "enterprise")),
            owner_id=f"owner-{rng.randrange(15)}",
            outcome="renewed" if ended else None,
            ended_at=renewal_date if ended else None,
        )


def summed(contributions: Iterable[Contribution]) -> list[tuple[Any, ...]]:
    """The roll-up rows the contributions add up to, as the activities would have written."""
    rows: dict[tuple[str, str, str, str, date, str], tuple[dict[str, float], dict[str, Any]]]
    rows = {}
    for c in contributions:
        spans = [("day", c.day), ("week", period_of(c.day, "week"))]
        spans.append(("month", period_of(c.day, "month")))
        for (dimension, value), (grain, first) in itertools.product(
            [("", ""), *c.groups.items()], spans
        ):
            key = (c.tenant, c.report, dimension, grain, first, value)
            counts, histograms = rows.get(key, ({}, {}))
            counts = merge_counts(counts, c.counts)
            for name, seconds in c.durations.items():
                histograms[name] = merge_histogram(
                    histograms.get(name, {}), {str(bucket_of(seconds)): 1}
                )
            rows[key] = (counts, histograms)
    return [(*key, json.dumps(c), json.dumps(h)) for key, (c, h) in rows.items()]


def _copy(
    connection: psycopg.Connection[Any], table: str, columns: str, rows: Iterable[Any]
) -> int:
    count = 0
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def seed(schema: str, sizes: Sizes, seed_value: int) -> None:
    """Fill the schema's tables (made by ``Database.create_tables``) by COPY."""
    rng = random.Random(seed_value)
    with psycopg.connect(POSTGRES, options=f"-csearch_path={schema}") as connection:
        _copy(
            connection,
            "audit_entries",
            "key, process_id, step, detail, recorded_at",
            (
                (f"p-{n // 10}/step-{n % 10}", f"p-{n // 10}", f"step-{n % 10}", "{}", _at(rng))
                for n in range(sizes.audit)
            ),
        )
        tickets = list(sla_outcomes(sizes.sla, rng))
        _copy(
            connection,
            "sla_outcomes",
            "key, tenant, process_id, ticket_id, customer_id, priority, tier, assignee_id, "
            "outcome, first_response, resolution, first_response_used_seconds, "
            "resolution_used_seconds, clocks, escalations, ended_at",
            (
                (
                    t.key,
                    t.tenant,
                    t.process_id,
                    t.ticket_id,
                    t.customer_id,
                    t.priority,
                    t.tier,
                    t.assignee_id,
                    t.outcome,
                    t.first_response,
                    t.resolution,
                    t.first_response_used_seconds,
                    t.resolution_used_seconds,
                    "{}",
                    json.dumps(t.escalations),
                    t.ended_at,
                )
                for t in tickets
            ),
        )
        facts = list(process_outcomes(sizes, rng))
        _copy(
            connection,
            "process_outcomes",
            "key, tenant, process, process_id, record_id, customer_id, outcome, occurred_at, "
            "started_at, plan, owner_id, score, grade, annual_value, automation_id, "
            "automation_version, detail",
            (
                (
                    f.key,
                    f.tenant,
                    f.process,
                    f.process_id,
                    f.record_id,
                    f.customer_id,
                    f.outcome,
                    f.occurred_at,
                    f.started_at,
                    f.plan,
                    f.owner_id,
                    f.score,
                    f.grade,
                    f.annual_value,
                    f.automation_id,
                    f.automation_version,
                    json.dumps(f.detail),
                )
                for f in facts
            ),
        )
        terms = list(renewal_terms(sizes.renewals, rng))
        _copy(
            connection,
            "renewal_terms",
            "key, tenant, process_id, term, renewal_date, annual_value, plan, owner_id, "
            "outcome, ended_at",
            (
                (
                    t.key,
                    t.tenant,
                    t.process_id,
                    t.term,
                    t.renewal_date,
                    t.annual_value,
                    t.plan,
                    t.owner_id,
                    t.outcome,
                    t.ended_at,
                )
                for t in terms
            ),
        )
        contributions = [sla_contribution(t) for t in tickets]
        contributions += [c for f in facts if (c := contribution_of(f)) is not None]
        contributions += [due_contribution(t, 1) for t in terms]
        contributions += [due_contribution(t, -1, still_due=False) for t in terms if t.ended_at]
        rollups = _copy(
            connection,
            "report_rollups",
            "tenant, report, dimension, grain, day, value, counts, histograms",
            summed(contributions),
        )
        connection.commit()
        connection.execute("ANALYZE")
    print(f"  {rollups} roll-up rows", flush=True)


def queries() -> Iterator[tuple[str, int, str, bool]]:
    for days in (90, 365):
        for period in ("week", "month"):
            for grouped in (False, True):
                yield f"{days}d/{period}{'/by' if grouped else ''}", days, period, grouped


async def time_reports(schema: str, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per run of each report, over every query and round."""
    url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
    database = Database.from_url(f"{url}?options=-csearch_path%3D{schema}", threads=2)
    timings: dict[str, list[float]] = {name: [] for name in REPORTS}
    try:
        for spec in REPORTS.values():  # a first run of each warms the pool and the caches
            await spec.run(database, None, ReportQuery(END - timedelta(days=7), END, as_of=TODAY))
        for _ in range(rounds):
            for name, spec in REPORTS.items():
                for _label, days, period, grouped in queries():
                    by = spec.dimensions[0] if grouped else None
                    query = ReportQuery(END - timedelta(days=days), END, period, by, TODAY)  # type: ignore[arg-type]
                    began = time.perf_counter()
                    await spec.run(database, None, query)
                    timings[name].append((time.perf_counter() - began) * 1000)
    finally:
        await database.dispose()
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def measure(sizes: Sizes, rounds: int) -> dict[str, list[float]]:
    with scratch_schema() as schema:
        url = POSTGRES.replace("postgresql://", "postgresql+psycopg://")
        database = Database.from_url(f"{url}?options=-csearch_path%3D{schema}", threads=1)
        await database.create_tables()
        await database.dispose()
        began = time.perf_counter()
        await asyncio.to_thread(seed, schema, sizes, 18)
        print(f"  seeded {sizes} in {time.perf_counter() - began:.0f} s", flush=True)
        return await time_reports(schema, rounds)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--sla", type=int, default=200_000)
    parser.add_argument("--renewals", type=int, default=50_000)
    parser.add_argument("--others", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smaller", type=int, default=10)
    args = parser.parse_args()
    big = Sizes(args.audit, args.sla, args.renewals, args.others)
    small = big.smaller(args.smaller)
    print("big:", flush=True)
    on_big = await measure(big, args.rounds)
    print("small:", flush=True)
    on_small = await measure(small, args.rounds)
    runs = args.rounds * len(list(queries()))
    print(f"\nms per report, {runs} runs each (90-day and 1-year, week and month, +/- by):")
    heading = f"{'report':<12} {'big p50':>8} {'p95':>7} {'range':>13}"
    print(f"{heading}  {'small p50':>9} {'p95':>7}  big/small")
    for name in REPORTS:
        b, s = on_big[name], on_small[name]
        print(
            f"{name:<12} {statistics.median(b):8.1f} {p95(b):7.1f} "
            f"{min(b):6.1f}-{max(b):<6.1f}  {statistics.median(s):9.1f} {p95(s):7.1f}  "
            f"{statistics.median(b) / statistics.median(s):5.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
