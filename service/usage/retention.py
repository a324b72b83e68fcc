"""Store retention: the elected store writer deletes usage rows older than
INTEGRATIONS_USAGE_RETENTION_DAYS at start-up and then every hour (docs/USAGE.md, retention).

Bounded work: each statement deletes at most `batch` rows in its own short transaction, and
the pass pauses between batches, so inserts (SQLite: queued on the same writer thread) commit
between two batches instead of waiting for the whole backlog. Hourly buckets go with the rows
(a bucket is deleted once it ends at or before the cutoff); daily buckets are kept, so summaries
of whole days outlive the rows.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from service.usage.store import HOUR, PruneRun, UsageStore, floor_to

log = logging.getLogger("symbia.integrations.usage")

BATCH_ROWS = 5_000
PAUSE_S = 0.05          # between two batches: inserts and queries get the store meanwhile
EVERY_S = 3600.0        # between two passes


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pruner:
    def __init__(self, store: UsageStore, retention_days: int, *, batch: int = BATCH_ROWS, pause_s: float = PAUSE_S,
                 every_s: float = EVERY_S, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.retention_days = retention_days
        self.batch = batch
        self.pause_s = pause_s
        self.every_s = every_s
        self.clock = clock
        self.batches = {"events": 0, "hourly": 0}  # delete statements run by this process

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0

    async def prune_once(self) -> PruneRun | None:
        """One pass over the whole backlog; None when retention is off (0 = keep forever)."""
        if not self.enabled:
            return None
        cutoff = self.clock() - timedelta(days=self.retention_days)
        events = await self._drain("events", lambda: self.store.delete_events_before(cutoff, self.batch))
        hour_edge = floor_to(cutoff, HOUR)  # an hourly bucket goes once it ends at or before the cutoff
        hourly = await self._drain("hourly", lambda: self.store.delete_hourly_before(hour_edge, self.batch))
        run = PruneRun(self.clock(), cutoff, events, hourly)
        await self.store.record_prune(run)
        if events or hourly:
            log.info("usage retention (%d days): deleted %d rows and %d hourly buckets older than %s",
                     self.retention_days, events, hourly, cutoff.isoformat())
        return run

    async def _drain(self, kind: str, delete_batch: Callable[[], Awaitable[int]]) -> int:
        total = 0
        while True:
            deleted = await delete_batch()
            self.batches[kind] += 1
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(self.pause_s)

    async def run(self, stopping: asyncio.Event) -> None:
        """Prune now, then every `every_s`, until `stopping` is set. A failed pass (store down)
        is logged and tried again at the next interval."""
        while not stopping.is_set():
            try:
                await self.prune_once()
            except Exception as exc:
                log.warning("usage retention pass failed (%s: %s); next try in %.0fs", type(exc).__name__, exc,
                            self.every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every_s)
