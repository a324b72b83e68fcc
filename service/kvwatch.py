"""A KV bucket every worker watches: the bucket's current values in memory, updated by a watcher
within milliseconds of any worker's write, so reads on the hot path never touch the bus."""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from service.jsreplicas import apply_replicas, create_replicated, kv_stream

log = logging.getLogger("symbia.integrations.kv")

_DELETES = ("DEL", "PURGE")


async def open_bucket(nc: Client, config: KeyValueConfig) -> KeyValue:
    """Bind to the bucket when it exists (another worker made it; its replicas follow
    `config.replicas`), else create it."""
    js = nc.jetstream()
    try:
        kv = await js.key_value(config.bucket)
    except BucketNotFoundError:
        try:
            return await create_replicated(lambda n: js.create_key_value(dataclasses.replace(config, replicas=n)),
                                           config.replicas, f"KV bucket {config.bucket}")
        except Exception:
            # Another worker created it in between: bind (or fail with the real error).
            return await js.key_value(config.bucket)
    await apply_replicas(js, kv_stream(config.bucket), config.replicas)
    return kv


# Called with (key, value or None when deleted, revision).
Listener = Callable[[str, bytes | None, int], None]


class WatchedBucket:
    def __init__(self, config: KeyValueConfig, listener: Listener) -> None:
        self._config = config
        self._listener = listener
        self.kv: KeyValue | None = None
        self._watcher = None
        self._task: asyncio.Task | None = None

    async def start(self, nc: Client, replicas: int = 1) -> KeyValue:
        self.kv = await open_bucket(nc, dataclasses.replace(self._config, replicas=replicas))
        self._watcher = await self.kv.watchall()
        while True:  # the current values, up to the end-of-snapshot marker
            update = await self._watcher.updates(timeout=30)
            if update is None:
                break
            self._apply(update)
        self._task = asyncio.create_task(self._watch())
        return self.kv

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    async def _watch(self) -> None:
        async for update in self._watcher:
            if update is not None:
                try:
                    self._apply(update)
                except Exception:
                    log.exception("cannot apply %s update for %s", self._config.bucket, update.key)

    def _apply(self, update: KeyValue.Entry) -> None:
        deleted = update.operation in _DELETES or not update.value
        self._listener(update.key, None if deleted else update.value, update.revision or 0)
