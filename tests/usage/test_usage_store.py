"""Both stores without the bus: windows that cut hours and days are exact (rollups plus raw
edge rows), inserts are idempotent by event id, migrations run once and are versioned."""

import asyncio
import random
import sqlite3
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts.usage import UsageEvent
from service.usage.events import new_event_id
from service.usage.postgres_store import PostgresUsageStore
from service.usage.sqlite_store import SqliteUsageStore
from service.usage.store import Window
from tests.usage.conftest import PG_URL, STORES, new_schema

NOW = datetime(2026, 3, 10, 14, 37, 21, 500_000, tzinfo=UTC)


def event(ts: datetime, org: str = "acme", user: str = "u1", integration: str | None = "openai",
          success: bool = True, tokens: int = 10) -> UsageEvent:
    return UsageEvent(id=new_event_id(), timestamp=ts, requestId="r", kind="execute", orgId=org, principalId=user,
                      principalType="user", integration=integration, success=success,
                      statusCode=200 if success else 502, durationMs=5, promptTokens=tokens - 4, completionTokens=4,
                      totalTokens=tokens, costMicros=3 if integration else None)


@pytest.fixture(params=STORES)
async def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteUsageStore(tmp_path / "usage.db")
    else:
        s = PostgresUsageStore(PG_URL, new_schema())
    await s.open()
    yield s
    await s.close()


async def test_windows_are_exact_at_hour_and_day_edges(store):
    rng = random.Random(7)
    ages = [timedelta(seconds=rng.uniform(0, 40 * 86400)) for _ in range(600)]
    # Rows right at and around the edges of a 1-, 7- and 30-day window.
    for days in (1, 7, 30):
        edge = timedelta(days=days)
        ages += [edge - timedelta(milliseconds=1), edge, edge + timedelta(milliseconds=1)]
    events = [event(NOW - age, user=rng.choice(["u1", "u2", "u3"]), integration=rng.choice(["openai", None]),
                    success=rng.random() > 0.2, tokens=rng.randint(4, 100)) for age in ages]
    events += [event(NOW - timedelta(hours=1), org="other")]
    assert await store.insert(events) == len(events)

    for days in (1, 2, 7, 30, 45):
        window = Window.ending_now(days, NOW)
        for integration in (None, "openai"):
            combos = await store.combos("acme", window, integration)
            want = [e for e in events if e.orgId == "acme" and e.timestamp.replace(
                microsecond=e.timestamp.microsecond // 1000 * 1000) >= window.since
                    and (integration is None or e.integration == integration)]
            assert sum(c.requests for c in combos) == len(want), (days, integration)
            assert sum(c.successes for c in combos) == sum(e.success for e in want)
            assert sum(c.total_tokens for c in combos) == sum(e.totalTokens for e in want)
            assert sum(c.cost_micros for c in combos) == sum(e.costMicros or 0 for e in want)
            assert {(c.integration, c.principal_id) for c in combos} == {(e.integration, e.principalId) for e in want}


async def test_inserting_the_same_events_again_changes_nothing(store):
    events = [event(NOW - timedelta(minutes=i)) for i in range(50)]
    assert await store.insert(events) == 50
    assert await store.insert(events[:20] + events[:20]) == 0  # a redelivered batch, with duplicates inside
    assert await store.insert([*events[40:], event(NOW)]) == 1
    combos = await store.combos("acme", Window.ending_now(1, NOW), None)
    assert sum(c.requests for c in combos) == 51
    assert await store.org_stats("acme") == (51, events[-1].timestamp)


async def test_logs_order_and_pages(store):
    events = [event(NOW - timedelta(minutes=i), user=f"u{i % 2}") for i in range(30)]
    await store.insert(events)
    rows = await store.logs("acme", NOW - timedelta(days=1), None, None, 500, 0)
    assert [r[0] for r in rows] == [e.id for e in events]
    assert [r[0] for r in await store.logs("acme", NOW - timedelta(days=1), None, "u1", 5, 5)] == [
        e.id for e in events if e.principalId == "u1"][5:10]


async def test_sqlite_migrates_once_and_keeps_its_version(tmp_path):
    path = tmp_path / "usage.db"
    first, second = SqliteUsageStore(path), SqliteUsageStore(path)
    await first.open()
    await second.open()  # a second worker on the same file
    assert first.schema_version == second.schema_version == 2
    await first.insert([event(NOW)])
    await first.close()
    await second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_postgres_migrates_once_and_records_the_version():
    schema = new_schema()
    stores = [PostgresUsageStore(PG_URL, schema) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # workers starting together
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        assert [r["version"] for r in await conn.fetch(
            "SELECT version FROM usage_schema_migrations ORDER BY version")] == [1, 2]
        indexes = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)}
        assert {"usage_events_org_ts", "usage_events_org_integration_ts", "usage_events_org_principal_ts",
                "usage_events_ts", "usage_rollup_hourly_bucket"} <= indexes
    finally:
        await conn.close()
        for s in stores:
            await s.close()


async def test_an_unreachable_postgres_is_an_error_not_a_hang():
    store = PostgresUsageStore("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(OSError):
        await store.open()
    assert store.location == "127.0.0.1:1/test"
    assert PostgresUsageStore("postgresql://u:secret@db.example:6543/usage", "s").location == (
        "db.example:6543/usage (schema s)")
