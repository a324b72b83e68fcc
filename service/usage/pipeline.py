"""One worker's usage pipeline: the call observer that publishes events, the store, and the
store writer (when this worker holds the writer lock).

Events are first published on the worker's request connection (ahead of the reply, see
publisher.py); everything else (republishing, the stream, the writer's consumer) uses a NATS
connection of the pipeline's own, which outlives the request connection at shutdown so that
unconfirmed events can still be republished."""

import asyncio
import contextlib
import logging
import os
import socket

import nats
from nats.aio.client import Client

from contracts.natsurl import split_credentials
from service.commands import Command, Reply
from service.usage.events import usage_event
from service.usage.publisher import UsagePublisher
from service.usage.retention import Pruner
from service.usage.store import UsageStore, open_store
from service.usage.stream import consumer_config, ensure_stream, stream_config
from service.usage.writer import StoreWriter, WriterLock

log = logging.getLogger("symbia.integrations.usage")

MAX_OPEN_BACKOFF_S = 30.0
SHUTDOWN_FLUSH_S = 5.0


class UsagePipeline:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.store: UsageStore = open_store(settings)
        self.store_ready = asyncio.Event()
        self.publisher = UsagePublisher(settings.usage_stream, settings.usage_buffer_max)
        lock_path = (settings.data_dir / "usage-writer.lock" if settings.database_url
                     else settings.usage_db_path.with_name(settings.usage_db_path.name + ".writer.lock"))
        self.pruner = Pruner(self.store, settings.usage_retention_days)
        self.writer = StoreWriter(self.store, self.store_ready, WriterLock(lock_path), settings.usage_stream,
                                  consumer_config(settings), settings.usage_batch_size, self._ensure_stream,
                                  self.pruner)
        self._nc: Client | None = None
        self._open_task: asyncio.Task | None = None

    # --- the call observer (runs before the reply is sent) ------------------------------------

    async def observe(self, command: Command, reply: Reply) -> None:
        if not self.settings.usage_events or command.record is None:
            return
        try:
            event = usage_event(command, reply, command.record)
        except Exception:
            log.exception("could not build the usage event of request %s", command.request_id)
            return
        await self.publisher.publish(event)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._nc = await nats.connect(**self._connect_options())
        try:
            await self._ensure_stream()
        except Exception as exc:  # the republisher and the writer try again
            log.warning("could not declare the usage stream %s: %s", self.settings.usage_stream, exc)
        js = self._nc.jetstream()
        self.publisher.attach(js, self._ensure_stream)
        self._open_task = asyncio.create_task(self._open_store(), name="usage-store-open")
        self.writer.start(self._nc)

    def publish_on(self, nc: Client) -> None:
        """The worker's request connection: events go out on it ahead of their replies."""
        self.publisher.publish_on(nc)

    async def _ensure_stream(self) -> None:
        assert self._nc is not None
        await ensure_stream(self._nc.jetstream(), stream_config(self.settings))

    async def _open_store(self) -> None:
        """Keep trying: a worker serves calls (and their events wait in the stream) while the
        database is down at start-up."""
        backoff = 0.5
        while True:
            try:
                await self.store.open()
            except Exception as exc:
                log.warning("usage store (%s, %s) not available: %s: %s; retrying in %.0fs", self.store.mode,
                            self.store.location, type(exc).__name__, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_OPEN_BACKOFF_S)
                continue
            self.store_ready.set()
            return

    async def close(self) -> None:
        """After the request subscribers stopped: flush buffered events, finish the batch in
        hand, close the store and the connection."""
        if self._nc is None:
            await self.store.close()
            return
        await self.publisher.close(min(self.settings.drain_timeout_s, SHUTDOWN_FLUSH_S))
        await self.writer.stop()
        if self._open_task is not None:
            self._open_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._open_task
        await self.store.close()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        self._nc = None

    async def consumer_lag(self) -> int | None:
        """Events of the stream the store has not committed yet (all orgs), or None."""
        if self._nc is None:
            return None
        try:
            info = await self._nc.jetstream().consumer_info(self.settings.usage_stream, self.settings.usage_consumer)
        except Exception:
            return None
        return info.num_pending + info.num_ack_pending

    def _connect_options(self) -> dict:
        s = self.settings
        servers, auth = split_credentials(s.nats_servers)
        options: dict = {
            "servers": servers,
            "name": f"integrations-usage:{socket.gethostname()}:{os.getpid()}",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "inbox_prefix": "_INBOX_worker",
        }
        options.update(auth)
        tls = s.nats_tls_context()
        if tls is not None:
            options["tls"] = tls
        if s.nats_creds:
            options["user_credentials"] = str(s.nats_creds)
        return options
