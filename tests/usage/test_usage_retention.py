"""Store retention on real SQLite and PostgreSQL: rows older than the retention go in bounded
batches, newer rows stay, hourly buckets go with the rows and daily buckets stay (docs/USAGE.md,
retention); 0 keeps everything. The clock is injected: events carry old timestamps."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service.usage.postgres_store import PostgresUsageStore
from service.usage.retention import Pruner
from service.usage.sqlite_store import SqliteUsageStore
from service.usage.store import DAY, EPOCH, HOUR, Window, ceil_to, floor_to, from_ms
from tests.usage.conftest import PG_URL, STORES, gateway, new_org, new_schema
from tests.usage.test_usage_store import NOW, event

RETENTION = 90
CUTOFF = NOW - timedelta(days=RETENTION)


def pruner(store, days: int = RETENTION, **kwargs) -> Pruner:
    return Pruner(store, days, pause_s=0, clock=lambda: NOW, **kwargs)


async def table_rows(store, table: str) -> list[tuple]:
    """(org_id, bucket or ts as an aware datetime) of every row of a table, read directly."""
    column = "ts" if table == "usage_events" else "bucket"
    if isinstance(store, SqliteUsageStore):
        with sqlite3.connect(store.path) as conn:
            return [(org, from_ms(v)) for org, v in conn.execute(f"SELECT org_id, {column} FROM {table}")]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": store._schema})
    try:
        return [(r[0], r[1]) for r in await conn.fetch(f"SELECT org_id, {column} FROM {table}")]
    finally:
        await conn.close()


def make_store(kind: str, tmp_path):
    return SqliteUsageStore(tmp_path / "usage.db") if kind == "sqlite" else PostgresUsageStore(PG_URL, new_schema())


@pytest.fixture(params=STORES)
async def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def ages_around_the_cutoff() -> list[timedelta]:
    edge = timedelta(days=RETENTION)
    return [timedelta(minutes=5), timedelta(days=1), timedelta(days=30), edge - timedelta(hours=2),
            edge - timedelta(milliseconds=1), edge, edge + timedelta(milliseconds=1), edge + timedelta(hours=3),
            timedelta(days=120), timedelta(days=200, hours=5), timedelta(days=364, hours=23)]


async def test_rows_older_than_the_retention_go_and_newer_rows_stay(store):
    events = [event(NOW - age) for age in ages_around_the_cutoff()] + [event(NOW - timedelta(days=150), org="other")]
    await store.insert(events)
    kept = [e for e in events if e.timestamp >= CUTOFF]
    gone = [e for e in events if e.timestamp < CUTOFF]

    run = await pruner(store).prune_once()

    assert run is not None and run.events == len(gone) and run.cutoff == CUTOFF and run.at == NOW
    stored = await store.logs("acme", EPOCH, None, None, 500, 0) + await store.logs("other", EPOCH, None, None, 500, 0)
    assert {r[0] for r in stored} == {e.id for e in kept}
    assert await store.org_stats("acme") == (len(kept), min(e.timestamp for e in kept))
    assert await store.org_stats("other") == (0, None)
    # Windows within the retention are still exact.
    for days in (1, 30, RETENTION):
        window = Window.ending_now(days, NOW)
        combos = await store.combos("acme", window, None)
        assert sum(c.requests for c in combos) == sum(e.timestamp >= window.since for e in events if e.orgId == "acme")
    # Hourly buckets that ended by the cutoff went with their rows; the cutoff's own hour stays.
    hourly = await table_rows(store, "usage_rollup_hourly")
    assert hourly and min(b for _, b in hourly) == floor_to(CUTOFF, HOUR)
    assert run.hourly == len({(e.orgId, floor_to(e.timestamp, HOUR)) for e in events}) - len(hourly)
    # Daily buckets stay: a year's summary still counts every whole day, only the partial first
    # day of the window (older than the retention) is missing.
    year = Window.ending_now(365, NOW)
    combos = await store.combos("acme", year, None)
    assert sum(c.requests for c in combos) == sum(e.timestamp >= ceil_to(year.since, DAY)
                                                  for e in events if e.orgId == "acme")
    assert sum(c.requests for c in combos) < sum(e.orgId == "acme" for e in events)
    assert len(await table_rows(store, "usage_rollup_daily")) == len({(e.orgId, floor_to(e.timestamp, DAY))
                                                                      for e in events})
    assert await store.last_prune() == run

    again = await pruner(store).prune_once()  # nothing left to delete
    assert (again.events, again.hourly) == (0, 0)


async def test_retention_zero_keeps_everything(store):
    events = [event(NOW - age) for age in ages_around_the_cutoff()] + [event(NOW - timedelta(days=3000))]
    await store.insert(events)
    forever = pruner(store, 0)
    assert not forever.enabled and await forever.prune_once() is None
    assert len(await table_rows(store, "usage_events")) == len(events)
    assert len(await table_rows(store, "usage_rollup_hourly")) == len({floor_to(e.timestamp, HOUR) for e in events})
    assert await store.org_stats("acme") == (len(events), min(e.timestamp for e in events))
    assert await store.last_prune() is None


async def test_a_large_backlog_goes_in_several_batches_while_inserts_go_on(store):
    old = [event(CUTOFF - timedelta(seconds=60 * i + 1), user=f"u{i % 7}") for i in range(9_000)]  # 150 h
    new = [event(NOW - timedelta(minutes=i)) for i in range(10)]
    for i in range(0, len(old), 1000):
        await store.insert(old[i:i + 1000])
    await store.insert(new)
    p = Pruner(store, RETENTION, batch=500, pause_s=0.01, clock=lambda: NOW)

    task = asyncio.create_task(p.prune_once())
    await asyncio.sleep(0)
    late = event(NOW)
    assert await store.insert([late]) == 1
    assert not task.done()  # the insert committed between two delete batches, not after the backlog
    run = await task

    assert run.events == len(old)
    assert p.batches["events"] == len(old) // 500 + 1  # full batches, then the one that found less
    assert p.batches["hourly"] >= 2  # about 1,050 old hourly buckets
    assert {r[0] for r in await store.logs("acme", EPOCH, None, None, 500, 0)} == {e.id for e in [*new, late]}
    assert await store.org_stats("acme") == (len(new) + 1, min(e.timestamp for e in new))


@pytest.mark.parametrize("kind", STORES)
async def test_the_store_writer_prunes_at_start_up_and_reports_it(kind, tmp_path, llmock):
    """A store with old rows, then a gateway on it: its elected writer prunes right away, and
    `/db/status` shows the retention and the pass."""
    org = new_org()
    now = datetime.now(UTC)
    old = [event(now - timedelta(days=40 + i), org=org) for i in range(5)]
    recent = [event(now - timedelta(days=i), org=org) for i in range(3)]
    seeded = make_store(kind, tmp_path)
    await seeded.open()
    await seeded.insert(old + recent)
    await seeded.close()
    where = {"usage_db_file": seeded.path} if kind == "sqlite" else {"database_schema": seeded._schema}

    async with gateway(kind, llmock.base_url, usage_retention_days=30, **where) as gw:
        for _ in range(200):
            status, body, _ = await gw.call("integrations.v1.db.status", org=org)
            if body["lastPruneAt"] is not None:
                break
            await asyncio.sleep(0.05)
    assert status == 200 and body["retentionDays"] == 30 and body["lastPrunedRows"] == len(old)
    assert body["rowCount"] == len(recent)
    assert body["oldestEvent"] is not None and body["lastPruneAt"] is not None
