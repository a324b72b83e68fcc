"""Registry persistence in JetStream, shared by every worker and kept across restarts.

* KV bucket `integrations-registry`: one small record per entry, key `g.<key>` (global) or
  `o.<org>.<key>` (org-scoped; `:` in an org id is written `=`). Writes are compare-and-set on
  the KV revision, so two workers (or two callers) cannot overwrite each other silently.
* Object store `integrations-registry-docs`: the operations/namespace of each entry version
  and its inline spec (KV values are limited to max_payload; objects are chunked, any size).
  A new version writes new objects first and deletes the old ones after the KV write.
* Every worker watches the bucket and keeps the records in memory (reads do not touch the
  bus); operation sets are loaded on first use and cached per object name.
"""

import asyncio
import contextlib
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, ObjectStoreConfig
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from contracts.registry import KEY_PATTERN
from service.errors import GatewayError
from service.jsreplicas import apply_replicas, create_replicated, object_stream
from service.kvwatch import WatchedBucket
from service.registry.model import Entry, OperationSet

log = logging.getLogger("symbia.integrations.registry")

_CACHE_SIZE = 32


_VALID_KEY = re.compile(KEY_PATTERN)


def kv_key(org: str | None, key: str) -> str:
    return f"g.{key}" if org is None else f"o.{org.replace(':', '=')}.{key}"


def valid_key(key: str) -> bool:
    """Only registrable keys are looked up: anything else (`*`, `>`, dots) cannot exist and
    must not reach the KV API as a subject."""
    return bool(_VALID_KEY.match(key))


class VersionConflict(Exception):
    """The KV record changed since it was read."""


class RegistryStore:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._ops: OrderedDict[str, OperationSet] = OrderedDict()
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None
        self._nc: Client | None = None
        self._bucket = WatchedBucket(KeyValueConfig(bucket=subjects.REGISTRY_BUCKET, history=1,
                                                    description="integration registry entries"), self._on_update)
        self._ready = asyncio.Event()
        # Called with (kv key, entry or None) when an entry changes, from any worker.
        self.listeners: list[Callable[[str, Entry | None], None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, nc: Client, replicas: int = 1) -> None:
        self._nc = nc
        js = nc.jetstream()
        try:
            self._objects = await js.object_store(subjects.REGISTRY_DOCS_BUCKET)
            await apply_replicas(js, object_stream(subjects.REGISTRY_DOCS_BUCKET), replicas)
        except NotFoundError:
            self._objects = await create_replicated(lambda n: js.create_object_store(
                subjects.REGISTRY_DOCS_BUCKET, ObjectStoreConfig(
                    replicas=n, description="operations and inline specs of registry entries")),
                replicas, f"object store {subjects.REGISTRY_DOCS_BUCKET}")
        # The current records, up to the end of the snapshot, then every change from any worker.
        self._kv = await self._bucket.start(nc, replicas)
        self._ready.set()

    async def ready(self, timeout_s: float = 30.0) -> None:
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                raise GatewayError("The registry is not available yet; retry shortly", ErrorCategory.internal,
                                   status=503, retryable=True, reason=Reason.BUS_UNAVAILABLE) from None

    async def close(self) -> None:
        await self._bucket.close()

    def _on_update(self, key: str, value: bytes | None, revision: int) -> None:
        current = self._entries.get(key)
        if current is not None and revision and revision < current.revision:
            return  # this worker already applied a newer write of its own
        if value is None:
            self._entries.pop(key, None)
            entry = None
        else:
            entry = Entry.from_json(value, revision)
            self._entries[key] = entry
        for listener in self.listeners:
            listener(key, entry)

    # --- reads -------------------------------------------------------------------------------

    def get(self, org: str | None, key: str) -> Entry | None:
        return self._entries.get(kv_key(org, key))

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    async def fetch(self, org: str | None, key: str) -> Entry | None:
        """The authoritative record (a KV read), for writes and for reads that missed locally."""
        if not valid_key(key):
            return None
        try:
            found = await self._kv.get(kv_key(org, key))
        except NotFoundError:  # missing or deleted
            return None
        if not found.value:
            return None
        entry = Entry.from_json(found.value, found.revision or 0)
        self._remember(kv_key(org, key), entry)
        return entry

    async def operations(self, entry: Entry) -> OperationSet:
        if entry.doc is None:
            return OperationSet([], {})
        cached = self._ops.get(entry.doc)
        if cached is not None:
            self._ops.move_to_end(entry.doc)
            return cached
        try:
            result = await self._objects.get(entry.doc)
        except NotFoundError:
            raise GatewayError(f"The operations of {entry.key} are missing from the registry store; refresh it",
                               ErrorCategory.internal, reason=Reason.INTERNAL) from None
        except TimeoutError:  # (nats' too) e.g. a NATS cluster electing a new JetStream leader
            raise GatewayError("The registry store did not answer in time; retry shortly", ErrorCategory.internal,
                               status=503, retryable=True, reason=Reason.BUS_UNAVAILABLE) from None
        ops = await asyncio.to_thread(OperationSet.from_json, result.data or b"{}")
        self._ops[entry.doc] = ops
        while len(self._ops) > _CACHE_SIZE:
            self._ops.popitem(last=False)
        return ops

    async def inline_spec(self, entry: Entry) -> Any:
        if not entry.spec_doc:
            return None
        try:
            result = await self._objects.get(entry.spec_doc)
        except NotFoundError:
            return None
        return orjson.loads(result.data or b"null")

    # --- writes ------------------------------------------------------------------------------

    async def save(self, entry: Entry, ops: OperationSet, spec: Any = None, *, previous: Entry | None) -> Entry:
        """Create (`previous` None) or replace `previous` (compare-and-set on its revision)."""
        key = kv_key(entry.org, entry.key)
        stem = f"{key}.v{entry.version}.{uuid.uuid4().hex[:8]}"
        entry.doc = stem
        await self._objects.put(stem, await asyncio.to_thread(ops.to_json))
        written = [stem]
        if spec is not None:
            entry.spec_doc = f"{stem}.spec"
            await self._objects.put(entry.spec_doc, await asyncio.to_thread(orjson.dumps, spec))
            written.append(entry.spec_doc)
        else:
            entry.spec_doc = None
        try:
            if previous is None:
                revision = await self._kv.create(key, entry.to_json())
            else:
                revision = await self._kv.update(key, entry.to_json(), last=previous.revision)
        except KeyWrongLastSequenceError:
            await self._delete_objects(written)
            raise VersionConflict(key) from None
        except BaseException:
            await self._delete_objects(written)
            raise
        entry.revision = revision
        self._ops[stem] = ops
        self._remember(key, entry)
        if previous is not None:
            await self._delete_objects([previous.doc, previous.spec_doc])
        return entry

    async def delete(self, entry: Entry) -> None:
        key = kv_key(entry.org, entry.key)
        try:
            await self._kv.delete(key, last=entry.revision)
        except KeyWrongLastSequenceError:
            raise VersionConflict(key) from None
        self._entries.pop(key, None)
        await self._delete_objects([entry.doc, entry.spec_doc])

    def _remember(self, key: str, entry: Entry) -> None:
        current = self._entries.get(key)
        if current is None or entry.revision >= current.revision:
            self._entries[key] = entry

    async def _delete_objects(self, names: list[str | None]) -> None:
        for name in names:
            if name:
                self._ops.pop(name, None)
                with contextlib.suppress(Exception):
                    await self._objects.delete(name)

    async def publish(self, subject: str, payload: dict[str, Any]) -> None:
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._nc.publish(subject, orjson.dumps(payload))
