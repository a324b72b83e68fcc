"""The store writer: a durable JetStream pull consumer that writes usage events to the store in
batches and acknowledges them only after the batch is committed.

Which process writes: on each host, the workers elect one writer with an exclusive `flock` on
a lock file beside the SQLite file (PostgreSQL: in the data dir). SQLite wants one writer, and
one writer per host is plenty for PostgreSQL too; the others retry the lock every second, and
the kernel releases it when the writer exits or is killed, so another worker takes over within
a second. Writers on several hosts share the durable consumer, which hands each event to one
of them.

Exactly-once counting from at-least-once delivery: the store skips event ids it already has
(and adds only new rows to the rollups, in the same transaction), so an event redelivered
after a crash between commit and ack, or republished by a worker, is counted once. A batch
that fails to commit is negatively acknowledged with a growing delay and stays in the stream
(`max_deliver` is unlimited); only an event that is not valid JSON of the contract is
terminated, and logged.
"""

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts.usage import UsageEvent
from service.usage.pull import PullBatches
from service.usage.retention import Pruner
from service.usage.store import UsageStore

log = logging.getLogger("symbia.integrations.usage")

IDLE_S = 1.0
CHECK_CONSUMER_EVERY = 10       # idle rounds between checks that the consumer still exists
# Once events arrive, let more accumulate a moment: at low traffic the store then commits (and
# fsyncs) a few times a second instead of once per call, which the worker's replies would feel.
LINGER_S = 0.1
MAX_BACKOFF_S = 10.0


class WriterLock:
    """An exclusive, non-blocking flock; released by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who writes, for operators
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StoreWriter:
    def __init__(self, store: UsageStore, store_ready: asyncio.Event, lock: WriterLock, stream: str,
                 consumer_config, batch_size: int, ensure_stream, pruner: Pruner | None = None) -> None:
        self._store = store
        self._store_ready = store_ready
        self._lock = lock
        self._stream = stream
        self._consumer_config = consumer_config
        self._batch_size = batch_size
        self._ensure_stream = ensure_stream
        self._pruner = pruner
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._batches: PullBatches | None = None   # the open pull consumer, closed on stop
        self._prune_task: asyncio.Task | None = None
        self._backoff = 0.5             # after a failed write
        self._subscribe_backoff = 0.5   # after a failed subscription (no stream, no consumer)
        self.written = 0

    @property
    def active(self) -> bool:
        return self._lock.held

    def start(self, nc: Client) -> None:
        self._task = asyncio.create_task(self._run(nc), name="usage-store-writer")

    async def stop(self) -> None:
        """Finish the batch in hand (committed and acknowledged, or left to redelivery) and hand
        back what arrived after it (nak: the next writer gets it at once, not after the ack wait)."""
        self._stopping.set()
        if self._batches is not None:
            self._batches.close()      # a waiting take() returns what it has now
        if self._prune_task is not None:  # a batch in hand commits or rolls back; the next pass redoes it
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, IDLE_S + 35)
            except asyncio.CancelledError:
                pass
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._lock.release()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self, nc: Client) -> None:
        while not self._stopping.is_set():
            if not self._lock.held:
                if not await asyncio.to_thread(self._lock.try_acquire):
                    await self._pause(1.0)
                    continue
                log.info("this worker writes usage events to the %s store (%s)", self._store.mode,
                         self._store.location)
            if not self._store_ready.is_set():
                await self._pause(0.5)
                continue
            if self._prune_task is None and self._pruner is not None and self._pruner.enabled:
                # Only the elected writer prunes, so N workers on a host do not all delete.
                self._prune_task = asyncio.create_task(self._pruner.run(self._stopping), name="usage-retention")
            try:
                await self._consume(nc)
            except Exception as exc:
                log.warning("usage store writer: %r; retrying in %.1fs", exc, self._subscribe_backoff)
                with contextlib.suppress(Exception):
                    await self._ensure_stream()
                await self._pause(self._subscribe_backoff)
                self._subscribe_backoff = min(self._subscribe_backoff * 2, MAX_BACKOFF_S)

    async def _consume(self, nc: Client) -> None:
        js = nc.jetstream()
        config = self._consumer_config
        try:
            info = await js.consumer_info(self._stream, config.durable_name)
            if abs((info.config.ack_wait or 0) - (config.ack_wait or 0)) > 0.001:
                log.info("usage consumer: ack wait %ss → %ss", info.config.ack_wait, config.ack_wait)
                await js.add_consumer(self._stream, config)   # the server edits a durable in place
        except NotFoundError:
            await js.add_consumer(self._stream, config)
        batches = PullBatches(nc, self._stream, config.durable_name, self._batch_size)
        await batches.start()
        self._batches = batches
        if self._stopping.is_set():
            batches.close()
        self._subscribe_backoff = 0.5
        idle = 0
        committing: asyncio.Task | None = None  # batch n commits while batch n+1 arrives and is decoded
        try:
            while True:
                msgs = await batches.take(LINGER_S, IDLE_S)
                if not msgs:
                    if self._stopping.is_set():
                        break
                    idle += 1
                    if idle % CHECK_CONSUMER_EVERY == 0:  # raises NotFoundError when it is gone
                        await js.consumer_info(self._stream, config.durable_name)
                    continue
                idle = 0
                decoded = await self._decode(msgs)
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(*decoded))
        finally:
            if committing is not None:
                await committing  # even when stopping: commit and acknowledge what is in hand
            self._batches = None
            with contextlib.suppress(Exception):
                await batches.stop()

    @staticmethod
    async def _decode(msgs: list[Msg]) -> tuple[list[Msg], list[UsageEvent]]:
        good: list[Msg] = []
        events: list[UsageEvent] = []
        for msg in msgs:
            try:
                events.append(UsageEvent.model_validate_json(msg.data))
                good.append(msg)
            except ValidationError:
                log.error("terminating a usage message that is not a UsageEvent on %s: %r", msg.subject,
                          msg.data[:500])
                await msg.term()
        return good, events

    async def _commit(self, msgs: list[Msg], events: list[UsageEvent]) -> None:
        if not events:
            return
        try:
            self.written += await self._store.insert(events)
        except Exception as exc:
            log.warning("usage store write failed (%s: %s); %d events stay in the stream, retry in %.1fs",
                        type(exc).__name__, exc, len(msgs), self._backoff)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=self._backoff)
            await self._pause(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
            return
        if self._backoff > 0.5:
            log.info("usage store writes again")
        self._backoff = 0.5
        for msg in msgs:
            await msg.ack()
