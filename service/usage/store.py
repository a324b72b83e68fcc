"""The usage store: one table of usage rows (the original's execution logs and proxy usage in
one) plus hourly and daily rollups that the summary queries read.

Why rollups: aggregating raw rows costs about 1 µs per row in PostgreSQL, so a summary over a
million rows would take a second. The writer adds each newly inserted row to its hour and day
bucket in the same transaction, so a query reads whole days from the daily table, the hours
before the first whole day from the hourly table, and only the rows of the first partial hour
from the raw table, and the answer is exact for any window that ends now and lies within the
retention.

Retention (service/usage/retention.py) deletes raw rows and hourly buckets older than
INTEGRATIONS_USAGE_RETENTION_DAYS in small batches; daily buckets are kept, so summaries of
whole days survive the raw rows.

Both stores implement the same small interface; `open_store` picks one from the settings.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts.usage import UsageEvent

SCHEMA_VERSION = 2  # 2: indexes on usage_events.ts and the hourly bucket, usage_prunes

# Column order of usage rows (the insert statements and `event_row` follow it).
EVENT_COLUMNS = (
    "id", "ts", "org_id", "kind", "principal_id", "principal_type", "integration", "operation",
    "model_requested", "model_served", "success", "status_code", "error_category", "error_reason",
    "error_message", "duration_ms", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micros",
    "credential_source", "credential_id", "caller_service", "trace_id", "request_id", "streamed", "partial",
    "usage_estimated",
)
BOOLEAN_COLUMNS = tuple(i for i, c in enumerate(EVENT_COLUMNS) if c in ("success", "streamed", "partial",
                                                                         "usage_estimated"))
ROLLUP_COLUMNS = (
    "org_id", "bucket", "integration", "principal_id", "requests", "successes", "prompt_tokens",
    "completion_tokens", "total_tokens", "cost_micros", "duration_ms", "last_ts",
)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class StoreUnavailable(Exception):
    """The store cannot answer now (not open yet, database down); the caller may retry."""


def event_row(event: UsageEvent) -> tuple:
    return (
        event.id, event.timestamp, event.orgId, event.kind, event.principalId, event.principalType,
        event.integration, event.operation, event.modelRequested, event.modelServed, event.success,
        event.statusCode, event.errorCategory, event.errorReason, event.errorMessage, event.durationMs,
        event.promptTokens, event.completionTokens, event.totalTokens, event.costMicros,
        event.credentialSource, event.credentialId, event.callerService, event.traceId, event.requestId,
        event.streamed, event.partial, event.usageEstimated,
    )


def floor_to(ts: datetime, step: timedelta) -> datetime:
    ts = ts.astimezone(UTC)
    if step == DAY:
        return ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return ts.replace(minute=0, second=0, microsecond=0)


def ceil_to(ts: datetime, step: timedelta) -> datetime:
    floor = floor_to(ts, step)
    return floor if floor == ts else floor + step


@dataclass(frozen=True, slots=True)
class Window:
    """[since, now): raw rows in [since, hour_edge), hourly buckets in [hour_edge, day_edge),
    daily buckets from day_edge on."""

    since: datetime
    hour_edge: datetime
    day_edge: datetime

    @classmethod
    def ending_now(cls, days: int, now: datetime | None = None) -> "Window":
        since = (now or datetime.now(UTC)) - timedelta(days=days)
        return cls(since, ceil_to(since, HOUR), ceil_to(since, DAY))


@dataclass(slots=True)
class Combo:
    """Totals of one (integration, principal) pair over a window."""

    integration: str | None
    principal_id: str
    requests: int
    successes: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_micros: int
    duration_ms: int
    last_ts: datetime


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch (exact integer arithmetic: bucket edges must not wobble)."""
    return (ts - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def rollups(events: Sequence[UsageEvent]) -> tuple[list[tuple], list[tuple]]:
    """Hourly and daily rows to add to the rollup tables (ROLLUP_COLUMNS order, `bucket` and
    `last_ts` in epoch ms), one per bucket key, sorted by key so that concurrent writers lock
    rollup rows in the same order."""
    hourly: dict[tuple, list] = {}
    daily: dict[tuple, list] = {}
    for e in events:
        ms = to_ms(e.timestamp)
        integration = e.integration or ""
        for buckets, bucket in ((hourly, ms - ms % HOUR_MS), (daily, ms - ms % DAY_MS)):
            key = (e.orgId, bucket, integration, e.principalId)
            acc = buckets.get(key)
            if acc is None:
                acc = buckets[key] = [0, 0, 0, 0, 0, 0, 0, ms]
            acc[0] += 1
            acc[1] += 1 if e.success else 0
            acc[2] += e.promptTokens
            acc[3] += e.completionTokens
            acc[4] += e.totalTokens
            acc[5] += e.costMicros or 0
            acc[6] += e.durationMs
            if ms > acc[7]:
                acc[7] = ms
    return ([(*key, *acc) for key, acc in sorted(hourly.items())],
            [(*key, *acc) for key, acc in sorted(daily.items())])


def unique_by_id(events: Sequence[UsageEvent]) -> list[UsageEvent]:
    seen: dict[str, UsageEvent] = {}
    for event in events:
        seen.setdefault(event.id, event)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class PruneRun:
    """One completed retention pass (all organizations)."""

    at: datetime            # when it finished
    cutoff: datetime        # rows older than this were deleted
    events: int             # usage_events rows deleted
    hourly: int             # usage_rollup_hourly rows deleted


class UsageStore(ABC):
    mode: str
    location: str
    schema_version: int | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect and migrate the schema (idempotent; safe with several workers at once)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def insert(self, events: Sequence[UsageEvent]) -> int:
        """Insert in one transaction the events whose id is not stored yet, and add them to the
        rollups; returns how many were new. Raises when nothing was committed."""

    @abstractmethod
    async def combos(self, org: str, window: Window, integration: str | None) -> list[Combo]: ...

    @abstractmethod
    async def logs(self, org: str, since: datetime, integration: str | None, principal_id: str | None,
                   limit: int, offset: int) -> list[tuple]:
        """Rows in EVENT_COLUMNS order, newest first; `ts` as an aware datetime."""

    @abstractmethod
    async def org_stats(self, org: str) -> tuple[int, datetime | None]:
        """(rows still stored, oldest timestamp) of one organization: the raw rows of the oldest
        row's day plus the daily rollups after it (retention deletes raw rows by age, so every
        event from the oldest row on is still stored)."""

    # --- retention (only the elected writer calls these) ------------------------------------

    @abstractmethod
    async def delete_events_before(self, cutoff: datetime, limit: int) -> int:
        """Delete at most `limit` usage rows older than `cutoff` in one short transaction;
        returns how many. The rollups are left alone (the daily ones outlive the rows)."""

    @abstractmethod
    async def delete_hourly_before(self, before: datetime, limit: int) -> int:
        """Delete at most `limit` hourly buckets that start before `before` (an hour edge);
        returns how many."""

    @abstractmethod
    async def record_prune(self, run: PruneRun) -> None:
        """Remember the last completed pass, for `GET /db/status` in any worker."""

    @abstractmethod
    async def last_prune(self) -> PruneRun | None: ...

    async def export(self, directory: Path) -> str | None:
        """Write a consistent snapshot into `directory` and return its file name; None when the
        store persists by itself and has nothing to export."""
        return None


def open_store(settings) -> UsageStore:
    if settings.database_url:
        from service.usage.postgres_store import PostgresUsageStore

        return PostgresUsageStore(settings.database_url, settings.database_schema)
    from service.usage.sqlite_store import SqliteUsageStore

    return SqliteUsageStore(settings.usage_db_path)
