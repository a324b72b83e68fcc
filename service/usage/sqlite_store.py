"""SQLite usage store (the default): one file in the data dir, WAL mode, one writer.

sqlite3 calls block, so each connection lives on its own single-thread executor: the reader
(every worker answers queries) and, in the one worker that writes, the writer. WAL lets the
readers of all worker processes read while the writer commits; `synchronous=FULL` makes a
commit durable before the writer acknowledges the batch to JetStream.
"""

import asyncio
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from contracts.usage import UsageEvent
from service.usage.store import (
    BOOLEAN_COLUMNS,
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
    to_ms,
    unique_by_id,
)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000

_ROLLUP_TABLE = """
CREATE TABLE {name} (
    org_id TEXT NOT NULL, bucket INTEGER NOT NULL, integration TEXT NOT NULL, principal_id TEXT NOT NULL,
    requests INTEGER NOT NULL, successes INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    PRIMARY KEY (org_id, bucket, integration, principal_id)
) WITHOUT ROWID"""

# Migration n takes the schema from version n-1 to n (PRAGMA user_version). Append only.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE usage_events (
            id TEXT PRIMARY KEY, ts INTEGER NOT NULL, org_id TEXT NOT NULL, kind TEXT NOT NULL,
            principal_id TEXT NOT NULL, principal_type TEXT NOT NULL, integration TEXT, operation TEXT,
            model_requested TEXT, model_served TEXT, success INTEGER NOT NULL, status_code INTEGER NOT NULL,
            error_category TEXT, error_reason TEXT, error_message TEXT, duration_ms INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
            cost_micros INTEGER, credential_source TEXT, credential_id TEXT, caller_service TEXT, trace_id TEXT,
            request_id TEXT NOT NULL, streamed INTEGER NOT NULL DEFAULT 0, partial INTEGER NOT NULL DEFAULT 0,
            usage_estimated INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX usage_events_org_ts ON usage_events (org_id, ts)",
        "CREATE INDEX usage_events_org_integration_ts ON usage_events (org_id, integration, ts)",
        "CREATE INDEX usage_events_org_principal_ts ON usage_events (org_id, principal_id, ts)",
        _ROLLUP_TABLE.format(name="usage_rollup_hourly"),
        _ROLLUP_TABLE.format(name="usage_rollup_daily"),
    ),
    (
        # Retention deletes by age across all organizations.
        "CREATE INDEX usage_events_ts ON usage_events (ts)",
        "CREATE INDEX usage_rollup_hourly_bucket ON usage_rollup_hourly (bucket)",
        """CREATE TABLE usage_prunes (
            id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL, cutoff INTEGER NOT NULL,
            events INTEGER NOT NULL, hourly INTEGER NOT NULL)""",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION

_INSERT = (f"INSERT INTO usage_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) "
           "ON CONFLICT (id) DO NOTHING")
_SUMS = ("requests", "successes", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micros", "duration_ms")


def _upsert(table: str) -> str:
    adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS)
    return (f"INSERT INTO {table} ({', '.join(ROLLUP_COLUMNS)}) VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))}) "
            f"ON CONFLICT (org_id, bucket, integration, principal_id) DO UPDATE SET {adds}, "
            "last_ts = max(last_ts, excluded.last_ts)")


_UPSERT_HOURLY = _upsert("usage_rollup_hourly")
_UPSERT_DAILY = _upsert("usage_rollup_daily")
_PART_COLUMNS = "integration, principal_id, " + ", ".join(_SUMS) + ", last_ts"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


class SqliteUsageStore(UsageStore):
    mode = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="usage-sqlite-read")
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="usage-sqlite-write")
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._reader_pool, self._open_reader)

    def _open_reader(self) -> None:
        if self._reader is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            self.schema_version = self._migrate(conn)
            conn.execute("PRAGMA query_only = 1")
        except BaseException:
            conn.close()
            raise
        self._reader = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number > version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                    version = number
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return version

    async def close(self) -> None:
        def close_reader() -> None:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

        def close_writer() -> None:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        await self._run(self._reader_pool, close_reader)
        await self._run(self._writer_pool, close_writer)
        self._reader_pool.shutdown(wait=False)
        self._writer_pool.shutdown(wait=False)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        def call() -> T:
            if self._reader is None:
                raise StoreUnavailable("the usage store is not open")
            try:
                return fn(self._reader)
            except sqlite3.OperationalError as exc:  # locked past the busy timeout, I/O error
                raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc

        return call

    # --- writes -----------------------------------------------------------------------------

    async def insert(self, events: Sequence[UsageEvent]) -> int:
        events = unique_by_id(events)
        return await self._run(self._writer_pool, lambda: self._insert(events))

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._writer = conn
        return self._writer

    def _insert(self, events: list[UsageEvent]) -> int:
        conn = self._writer_conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored: set[str] = set()
            ids = [e.id for e in events]
            for i in range(0, len(ids), 900):  # under SQLite's variable limit
                chunk = ids[i:i + 900]
                stored.update(r[0] for r in conn.execute(
                    f"SELECT id FROM usage_events WHERE id IN ({', '.join('?' * len(chunk))})", chunk))
            new = [e for e in events if e.id not in stored]
            # ON CONFLICT stays as a guard; this transaction holds the write lock, so `stored` is exact.
            conn.executemany(_INSERT, [(r[0], to_ms(r[1]), *r[2:]) for r in map(event_row, new)])
            hourly, daily = rollups(new)
            conn.executemany(_UPSERT_HOURLY, hourly)
            conn.executemany(_UPSERT_DAILY, daily)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return len(new)

    # --- retention: each batch is its own short transaction on the writer's thread, so a batch
    # of inserts queued meanwhile commits right after it ---------------------------------------

    def _write(self, sql: str, params: tuple) -> int:
        conn = self._writer_conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            count = conn.execute(sql, params).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return count

    async def delete_events_before(self, cutoff: datetime, limit: int) -> int:
        sql = ("DELETE FROM usage_events WHERE rowid IN "
               "(SELECT rowid FROM usage_events WHERE ts < ? ORDER BY ts LIMIT ?)")
        return await self._run(self._writer_pool, lambda: self._write(sql, (to_ms(cutoff), limit)))

    async def delete_hourly_before(self, before: datetime, limit: int) -> int:
        sql = ("DELETE FROM usage_rollup_hourly WHERE (org_id, bucket, integration, principal_id) IN "
               "(SELECT org_id, bucket, integration, principal_id FROM usage_rollup_hourly "
               " WHERE bucket < ? ORDER BY bucket LIMIT ?)")
        return await self._run(self._writer_pool, lambda: self._write(sql, (to_ms(before), limit)))

    async def record_prune(self, run: PruneRun) -> None:
        sql = ("INSERT INTO usage_prunes (id, at, cutoff, events, hourly) VALUES (1, ?, ?, ?, ?) "
               "ON CONFLICT (id) DO UPDATE SET at = excluded.at, cutoff = excluded.cutoff, "
               "events = excluded.events, hourly = excluded.hourly")
        params = (to_ms(run.at), to_ms(run.cutoff), run.events, run.hourly)
        await self._run(self._writer_pool, lambda: self._write(sql, params))

    async def last_prune(self) -> PruneRun | None:
        def query(conn: sqlite3.Connection) -> PruneRun | None:
            row = conn.execute("SELECT at, cutoff, events, hourly FROM usage_prunes WHERE id = 1").fetchone()
            return PruneRun(from_ms(row[0]), from_ms(row[1]), row[2], row[3]) if row else None

        return await self._run(self._reader_pool, self._read(query))

    # --- reads ------------------------------------------------------------------------------

    async def combos(self, org: str, window: Window, integration: str | None) -> list[Combo]:
        extra = " AND integration = :integration" if integration else ""
        sql = f"""
            WITH parts AS (
                SELECT {_PART_COLUMNS} FROM usage_rollup_daily
                 WHERE org_id = :org AND bucket >= :day{extra}
                UNION ALL
                SELECT {_PART_COLUMNS} FROM usage_rollup_hourly
                 WHERE org_id = :org AND bucket >= :hour AND bucket < :day{extra}
                UNION ALL
                SELECT coalesce(integration, ''), principal_id, 1, success, prompt_tokens, completion_tokens,
                       total_tokens, coalesce(cost_micros, 0), duration_ms, ts
                  FROM usage_events WHERE org_id = :org AND ts >= :since AND ts < :hour{extra}
            )
            SELECT integration, principal_id, sum(requests), sum(successes), sum(prompt_tokens),
                   sum(completion_tokens), sum(total_tokens), sum(cost_micros), sum(duration_ms), max(last_ts)
              FROM parts GROUP BY integration, principal_id"""
        params = {"org": org, "since": to_ms(window.since), "hour": to_ms(window.hour_edge),
                  "day": to_ms(window.day_edge), "integration": integration}

        def query(conn: sqlite3.Connection) -> list[Combo]:
            return [Combo(r[0] or None, r[1], *r[2:9], from_ms(r[9])) for r in conn.execute(sql, params)]

        return await self._run(self._reader_pool, self._read(query))

    async def logs(self, org: str, since: datetime, integration: str | None, principal_id: str | None,
                   limit: int, offset: int) -> list[tuple]:
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM usage_events WHERE org_id = ? AND ts >= ?"
        params: list = [org, to_ms(since)]
        if integration:
            sql += " AND integration = ?"
            params.append(integration)
        if principal_id:
            sql += " AND principal_id = ?"
            params.append(principal_id)
        sql += " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]

        def query(conn: sqlite3.Connection) -> list[tuple]:
            return [tuple(from_ms(v) if i == 1 else bool(v) if i in BOOLEAN_COLUMNS else v for i, v in enumerate(r))
                    for r in conn.execute(sql, params)]

        return await self._run(self._reader_pool, self._read(query))

    async def org_stats(self, org: str) -> tuple[int, datetime | None]:
        def query(conn: sqlite3.Connection) -> tuple[int, datetime | None]:
            conn.execute("BEGIN")  # one snapshot for the three reads
            try:
                oldest = conn.execute("SELECT min(ts) FROM usage_events WHERE org_id = ?", (org,)).fetchone()[0]
                if oldest is None:
                    return 0, None
                edge = to_ms(ceil_to(from_ms(oldest), DAY))
                first_day = conn.execute("SELECT count(*) FROM usage_events WHERE org_id = ? AND ts < ?",
                                         (org, edge)).fetchone()[0]
                later = conn.execute("SELECT coalesce(sum(requests), 0) FROM usage_rollup_daily "
                                     "WHERE org_id = ? AND bucket >= ?", (org, edge)).fetchone()[0]
                return first_day + later, from_ms(oldest)
            finally:
                conn.execute("COMMIT")

        return await self._run(self._reader_pool, self._read(query))

    async def export(self, directory: Path) -> str | None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"usage-{stamp}-{secrets.token_hex(3)}.sqlite"

        def snapshot() -> None:
            if self._reader is None:
                raise StoreUnavailable("the usage store is not open")
            directory.mkdir(parents=True, exist_ok=True)
            conn = _connect(self.path)  # VACUUM INTO needs a connection that is not query_only
            try:
                conn.execute("VACUUM INTO ?", (str(directory / name),))
            finally:
                conn.close()

        await self._run(self._reader_pool, snapshot)
        return name
