"""PostgreSQL usage store (DATABASE_URL): asyncpg pool; the service creates and migrates its
schema itself (versioned in `usage_schema_migrations`, one migrator at a time under an
advisory lock). Batches travel as one array per column (`unnest`), so a batch of any size is
one round trip."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg

from contracts.usage import UsageEvent
from service.usage.store import (
    DAY,
    EVENT_COLUMNS,
    ROLLUP_COLUMNS,
    SCHEMA_VERSION,
    Combo,
    PruneRun,
    StoreUnavailable,
    UsageStore,
    Window,
    ceil_to,
    event_row,
    from_ms,
    rollups,
    unique_by_id,
)

T = TypeVar("T")
MIGRATION_LOCK = 0x5359_4D42_4941_5553  # pg_advisory_xact_lock key: "SYMBIAUS"
PRUNE_LOCK = 0x5359_4D42_5052_554E      # pg_try_advisory_xact_lock key: "SYMBPRUN" (one pruner across hosts)

EVENT_TYPES = (
    "text", "timestamptz", "text", "text", "text", "text", "text", "text", "text", "text", "boolean", "integer",
    "text", "text", "text", "integer", "bigint", "bigint", "bigint", "bigint", "text", "text", "text", "text", "text",
    "boolean", "boolean", "boolean",
)
ROLLUP_TYPES = ("text", "timestamptz", "text", "text", *["bigint"] * 7, "timestamptz")
assert len(EVENT_TYPES) == len(EVENT_COLUMNS) and len(ROLLUP_TYPES) == len(ROLLUP_COLUMNS)

_ROLLUP_TABLE = """
CREATE TABLE {name} (
    org_id text NOT NULL, bucket timestamptz NOT NULL, integration text NOT NULL, principal_id text NOT NULL,
    requests bigint NOT NULL, successes bigint NOT NULL, prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL, total_tokens bigint NOT NULL, cost_micros bigint NOT NULL,
    duration_ms bigint NOT NULL, last_ts timestamptz NOT NULL,
    PRIMARY KEY (org_id, bucket, integration, principal_id)
) WITH (fillfactor = 70)"""

# Migration n takes the schema from version n-1 to n. Append only.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE usage_events (
            id text PRIMARY KEY, ts timestamptz NOT NULL, org_id text NOT NULL, kind text NOT NULL,
            principal_id text NOT NULL, principal_type text NOT NULL, integration text, operation text,
            model_requested text, model_served text, success boolean NOT NULL, status_code integer NOT NULL,
            error_category text, error_reason text, error_message text, duration_ms integer NOT NULL,
            prompt_tokens bigint NOT NULL, completion_tokens bigint NOT NULL, total_tokens bigint NOT NULL,
            cost_micros bigint, credential_source text, credential_id text, caller_service text, trace_id text,
            request_id text NOT NULL, streamed boolean NOT NULL DEFAULT false, partial boolean NOT NULL DEFAULT false,
            usage_estimated boolean NOT NULL DEFAULT false)""",
        "CREATE INDEX usage_events_org_ts ON usage_events (org_id, ts DESC)",
        "CREATE INDEX usage_events_org_integration_ts ON usage_events (org_id, integration, ts DESC)",
        "CREATE INDEX usage_events_org_principal_ts ON usage_events (org_id, principal_id, ts DESC)",
        _ROLLUP_TABLE.format(name="usage_rollup_hourly"),
        _ROLLUP_TABLE.format(name="usage_rollup_daily"),
    ),
    (
        # Retention deletes by age across all organizations.
        "CREATE INDEX usage_events_ts ON usage_events (ts)",
        "CREATE INDEX usage_rollup_hourly_bucket ON usage_rollup_hourly (bucket)",
        """CREATE TABLE usage_prunes (
            id integer PRIMARY KEY CHECK (id = 1), at timestamptz NOT NULL, cutoff timestamptz NOT NULL,
            events bigint NOT NULL, hourly bigint NOT NULL)""",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION


def _unnest(types: Sequence[str]) -> str:
    return ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=1))


_INSERT = (f"INSERT INTO usage_events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest({_unnest(EVENT_TYPES)}) "
           "ON CONFLICT (id) DO NOTHING RETURNING id")
_SUMS = ("requests", "successes", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micros", "duration_ms")
_PART_COLUMNS = "integration, principal_id, " + ", ".join(_SUMS) + ", last_ts"


def _upsert(table: str) -> str:
    adds = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in _SUMS)
    return (f"INSERT INTO {table} ({', '.join(ROLLUP_COLUMNS)}) SELECT * FROM unnest({_unnest(ROLLUP_TYPES)}) "
            f"ON CONFLICT (org_id, bucket, integration, principal_id) DO UPDATE SET {adds}, "
            f"last_ts = greatest({table}.last_ts, EXCLUDED.last_ts)")


_UPSERT_HOURLY = _upsert("usage_rollup_hourly")
_UPSERT_DAILY = _upsert("usage_rollup_daily")

# Failures that mean "the database is not reachable now", as opposed to a bug in a query.
_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError)


def describe(url: str, schema: str | None) -> str:
    """host:port/database (schema s): where the data is, without credentials."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{unquote(parts.path.lstrip('/')) or '?'}"
    return f"{where} (schema {schema})" if schema else where


def _columns(rows: Sequence[tuple], width: int) -> list[list]:
    return [[row[i] for row in rows] for i in range(width)]


class PostgresUsageStore(UsageStore):
    mode = "postgres"

    def __init__(self, url: str, schema: str | None = None, pool_size: int = 4) -> None:
        self._url = url
        self._schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self.location = describe(url, schema)

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"application_name": "symbia-integrations"}
        if self._schema:
            settings["search_path"] = f'"{self._schema}"'
        pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size, command_timeout=30,
                                         server_settings=settings)
        try:
            async with pool.acquire() as conn:
                self.schema_version = await self._migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _migrate(self, conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            if self._schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await conn.execute("CREATE TABLE IF NOT EXISTS usage_schema_migrations ("
                               "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM usage_schema_migrations")
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number > version:
                    for statement in statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO usage_schema_migrations (version) VALUES ($1)", number)
                    version = number
        return version

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _with(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the usage store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc

    async def insert(self, events: Sequence[UsageEvent]) -> int:
        events = unique_by_id(events)
        if not events:
            return 0

        async def write(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                inserted = {r[0] for r in await conn.fetch(_INSERT, *_columns([event_row(e) for e in events],
                                                                               len(EVENT_COLUMNS)))}
                new = [e for e in events if e.id in inserted]
                for sql, rows in zip((_UPSERT_HOURLY, _UPSERT_DAILY), rollups(new), strict=True):
                    if rows:
                        rows = [(*r[:1], from_ms(r[1]), *r[2:11], from_ms(r[11])) for r in rows]
                        await conn.execute(sql, *_columns(rows, len(ROLLUP_COLUMNS)))
                return len(new)

        return await self._with(write)

    # --- retention: one short transaction per batch. Writers on several hosts may all prune; the
    # advisory lock lets one of them work and the others skip the batch (they find nothing later).

    async def _delete_batch(self, sql: str, before: datetime, limit: int) -> int:
        async def delete(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK):
                    return 0
                status = await conn.execute(sql, before, limit)
                return int(status.rsplit(" ", 1)[1])

        return await self._with(delete)

    async def delete_events_before(self, cutoff: datetime, limit: int) -> int:
        return await self._delete_batch(
            "DELETE FROM usage_events WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM usage_events WHERE ts < $1 ORDER BY ts LIMIT $2))", cutoff, limit)

    async def delete_hourly_before(self, before: datetime, limit: int) -> int:
        return await self._delete_batch(
            "DELETE FROM usage_rollup_hourly WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM usage_rollup_hourly WHERE bucket < $1 ORDER BY bucket LIMIT $2))", before, limit)

    async def record_prune(self, run: PruneRun) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO usage_prunes (id, at, cutoff, events, hourly) VALUES (1, $1, $2, $3, $4) "
                "ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, cutoff = EXCLUDED.cutoff, "
                "events = EXCLUDED.events, hourly = EXCLUDED.hourly", run.at, run.cutoff, run.events, run.hourly)

        await self._with(write)

    async def last_prune(self) -> PruneRun | None:
        async def query(conn: asyncpg.Connection) -> PruneRun | None:
            row = await conn.fetchrow("SELECT at, cutoff, events, hourly FROM usage_prunes WHERE id = 1")
            return PruneRun(row[0], row[1], int(row[2]), int(row[3])) if row else None

        return await self._with(query)

    async def combos(self, org: str, window: Window, integration: str | None) -> list[Combo]:
        extra = " AND integration = $5" if integration else ""
        sql = f"""
            WITH parts AS (
                SELECT {_PART_COLUMNS} FROM usage_rollup_daily
                 WHERE org_id = $1 AND bucket >= $4{extra}
                UNION ALL
                SELECT {_PART_COLUMNS} FROM usage_rollup_hourly
                 WHERE org_id = $1 AND bucket >= $3 AND bucket < $4{extra}
                UNION ALL
                SELECT coalesce(integration, ''), principal_id, 1, success::int, prompt_tokens, completion_tokens,
                       total_tokens, coalesce(cost_micros, 0), duration_ms, ts
                  FROM usage_events WHERE org_id = $1 AND ts >= $2 AND ts < $3{extra}
            )
            SELECT integration, principal_id, sum(requests), sum(successes), sum(prompt_tokens),
                   sum(completion_tokens), sum(total_tokens), sum(cost_micros), sum(duration_ms), max(last_ts)
              FROM parts GROUP BY integration, principal_id"""
        args = [org, window.since, window.hour_edge, window.day_edge] + ([integration] if integration else [])

        async def query(conn: asyncpg.Connection) -> list[Combo]:
            return [Combo(r[0] or None, r[1], *(int(v) for v in r[2:9]), r[9]) for r in await conn.fetch(sql, *args)]

        return await self._with(query)

    async def logs(self, org: str, since: datetime, integration: str | None, principal_id: str | None,
                   limit: int, offset: int) -> list[tuple]:
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM usage_events WHERE org_id = $1 AND ts >= $2"
        args: list = [org, since]
        if integration:
            args.append(integration)
            sql += f" AND integration = ${len(args)}"
        if principal_id:
            args.append(principal_id)
            sql += f" AND principal_id = ${len(args)}"
        sql += f" ORDER BY ts DESC, id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}"
        args += [limit, offset]

        async def query(conn: asyncpg.Connection) -> list[tuple]:
            return [tuple(r) for r in await conn.fetch(sql, *args)]

        return await self._with(query)

    async def org_stats(self, org: str) -> tuple[int, datetime | None]:
        async def query(conn: asyncpg.Connection) -> tuple[int, datetime | None]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):  # one snapshot
                oldest = await conn.fetchval("SELECT min(ts) FROM usage_events WHERE org_id = $1", org)
                if oldest is None:
                    return 0, None
                edge = ceil_to(oldest, DAY)
                first_day = await conn.fetchval(
                    "SELECT count(*) FROM usage_events WHERE org_id = $1 AND ts < $2", org, edge)
                later = await conn.fetchval(
                    "SELECT coalesce(sum(requests), 0) FROM usage_rollup_daily WHERE org_id = $1 AND bucket >= $2",
                    org, edge)
                return int(first_day) + int(later), oldest

        return await self._with(query)
