"""The JetStream state of jobs (docs/JOBS.md):

* stream INTEGRATIONS_JOBS, work-queue retention, subjects integrations.v1.jobs.{execute,invoke,register}:
  the queued job messages, de-duplicated by Nats-Msg-Id within the duplicate window, removed when
  acknowledged, dropped after INTEGRATIONS_JOB_MAX_AGE_S;
* its durable pull consumer `integrations-jobs`, shared by every worker;
* KV bucket integrations-jobs: job id → JobRecord (status), kept INTEGRATIONS_JOB_RESULTS_TTL_S;
* stream INTEGRATIONS_RESULTS, subjects integrations.v1.results.>: the last result per job id, kept
  INTEGRATIONS_JOB_RESULTS_TTL_S, readable with a direct get; results above max_payload live in the
  object store integrations-job-results for as long.

Every worker declares them at start-up (idempotent; a changed setting updates the stream).
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from contracts import headers as h
from contracts import subjects
from service.jobs.records import JobRecord
from service.jsreplicas import apply_replicas, create_replicated, kv_stream, object_stream

log = logging.getLogger("symbia.integrations.jobs")

# Room left for headers and framing (they count against max_payload).
_HEADROOM = 64 * 1024
T = TypeVar("T")


async def bounded_gather(calls: Iterable[Awaitable[T]], limit: int = 64) -> list[T]:
    """asyncio.gather with at most `limit` calls in flight (a batch may hold a thousand jobs)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


@dataclass(frozen=True, slots=True)
class JobSettings:
    max_age_s: float
    results_ttl_s: float
    duplicate_window_s: float
    ack_wait_s: float
    replicas: int = 1


@dataclass(slots=True)
class StoredResult:
    status: int
    body: bytes


class JobStore:
    def __init__(self, nc: Client, settings: JobSettings) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._settings = settings
        self._kv: KeyValue | None = None
        self._objects: ObjectStore | None = None

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def open(self) -> None:
        s = self._settings
        await self._ensure_stream(StreamConfig(
            name=subjects.JOBS_STREAM, subjects=list(subjects.JOB_SUBJECTS), retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, max_age=s.max_age_s, duplicate_window=s.duplicate_window_s,
            discard=DiscardPolicy.OLD, num_replicas=s.replicas, description="queued integrations jobs (docs/JOBS.md)"))
        await self._ensure_stream(StreamConfig(
            name=subjects.RESULTS_STREAM, subjects=[f"{subjects.RESULTS_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=s.results_ttl_s,
            max_msgs_per_subject=1, duplicate_window=min(s.duplicate_window_s, s.results_ttl_s),
            allow_direct=True, num_replicas=s.replicas,
            description="results of integrations jobs, the last one per job id"))
        self._kv = await self._bucket()
        # created on first use (with the replicas); an existing one follows the setting
        await apply_replicas(self._js, object_stream(subjects.RESULTS_OBJECT_BUCKET), s.replicas)
        await self._ensure_consumer(ConsumerConfig(
            durable_name=subjects.JOBS_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait_s,
            max_deliver=-1,            # the runner counts attempts itself and finalizes the job
            max_waiting=4096,          # one pending pull per idle job slot of every worker
            description="integrations workers (docs/JOBS.md)"))

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            await create_replicated(lambda n: self._js.add_stream(dataclasses.replace(config, num_replicas=n)),
                                    config.num_replicas or 1, f"stream {config.name}")
        except BadRequestError:         # exists with another configuration: apply ours
            current = (await self._js.stream_info(config.name)).config
            try:
                await self._js.update_stream(config)
            except APIError as exc:
                if current.num_replicas == config.num_replicas:
                    raise
                log.warning("stream %s keeps %d replicas: the server refused %d (%s)", config.name,
                            current.num_replicas, config.num_replicas, exc.description)
                await self._js.update_stream(dataclasses.replace(config, num_replicas=current.num_replicas))

    async def _ensure_consumer(self, config: ConsumerConfig) -> None:
        try:
            await self._js.add_consumer(subjects.JOBS_STREAM, config)
        except BadRequestError:
            info = await self._js.consumer_info(subjects.JOBS_STREAM, subjects.JOBS_CONSUMER)
            log.warning("consumer %s exists with another configuration (ack_wait %ss); keeping it",
                        subjects.JOBS_CONSUMER, info.config.ack_wait)

    async def _bucket(self) -> KeyValue:
        def config(replicas: int) -> KeyValueConfig:
            return KeyValueConfig(bucket=subjects.JOBS_BUCKET, history=1, ttl=self._settings.results_ttl_s,
                                  replicas=replicas, description="status of integrations jobs (docs/JOBS.md)")

        try:
            return await create_replicated(lambda n: self._js.create_key_value(config(n)), self._settings.replicas,
                                           f"KV bucket {subjects.JOBS_BUCKET}")
        except BadRequestError:         # exists with another TTL: apply ours (a KV bucket is a stream)
            stream = kv_stream(subjects.JOBS_BUCKET)
            current = (await self._js.stream_info(stream)).config
            if current.max_age != self._settings.results_ttl_s:
                log.info("job status bucket: TTL %ss → %ss", current.max_age, self._settings.results_ttl_s)
                current.max_age = self._settings.results_ttl_s
                await self._js.update_stream(current)
            await apply_replicas(self._js, stream, self._settings.replicas)
            return await self._js.key_value(subjects.JOBS_BUCKET)

    # --- status records -------------------------------------------------------------------

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "JobStore.open() first"
        return self._kv

    async def get(self, job_id: str) -> tuple[JobRecord, int] | None:
        try:
            entry = await self.kv.get(job_id)
        except (KeyNotFoundError, KeyDeletedError):      # never created, or rolled back
            return None
        if not entry.value:
            return None
        return JobRecord.from_json(entry.value), entry.revision

    async def create(self, record: JobRecord) -> int | None:
        """The new record's revision, or None when the id exists."""
        try:
            return await self.kv.create(record.id, record.to_json())
        except KeyWrongLastSequenceError:
            return None

    async def update(self, record: JobRecord, revision: int) -> int | None:
        """Compare-and-set: the new revision, or None when someone else changed the record first."""
        try:
            return await self.kv.update(record.id, record.to_json(), last=revision)
        except KeyWrongLastSequenceError:
            return None

    async def delete(self, job_id: str) -> None:
        await self.kv.purge(job_id)

    # --- queue ----------------------------------------------------------------------------

    async def enqueue(self, kind: str, body: bytes, headers: Mapping[str, str]) -> bool:
        """Publish a job message; False when the stream had it already (same Nats-Msg-Id)."""
        ack = await self._js.publish(subjects.job_subject(kind), body, headers=dict(headers),
                                     stream=subjects.JOBS_STREAM)
        return not ack.duplicate

    # --- results --------------------------------------------------------------------------

    async def publish_result(self, record: JobRecord, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """On integrations.v1.results.<id> (kept in the results stream) and on the job's replyTo."""
        out = {**headers, h.STATUS: str(status), h.REQUEST_ID: record.id, h.JOB_KIND: record.kind,
               h.JOB_STATUS: record.status}
        if len(body) + _HEADROOM > self._nc.max_payload:
            await (await self._object_store()).put(record.id, body)
            out[h.RESULT_REF] = record.id
            body = b""
        await self._js.publish(subjects.result_subject(record.id), body,
                               headers={**out, h.NATS_MSG_ID: f"result-{record.id}"}, stream=subjects.RESULTS_STREAM)
        if record.reply_to:
            await self._nc.publish(record.reply_to, body, headers=out)

    async def publish_to(self, subject: str, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """A reply outside the results stream (a job message without an id, answered on its replyTo)."""
        await self._nc.publish(subject, body, headers={**headers, h.STATUS: str(status)})

    async def result(self, job_id: str) -> StoredResult | None:
        try:
            msg = await self._js.get_last_msg(subjects.RESULTS_STREAM, subjects.result_subject(job_id), direct=True)
        except NotFoundError:
            return None
        headers = msg.headers or {}
        body = msg.data or b""
        ref = headers.get(h.RESULT_REF)
        if ref:
            try:
                body = (await (await self._object_store()).get(ref)).data or b""
            except NotFoundError:
                return None
        try:
            status = int(headers.get(h.STATUS, "500"))
        except ValueError:
            status = 500
        return StoredResult(status, body)

    async def _object_store(self) -> ObjectStore:
        if self._objects is None:
            try:
                self._objects = await self._js.object_store(subjects.RESULTS_OBJECT_BUCKET)
            except NotFoundError:
                self._objects = await create_replicated(
                    lambda n: self._js.create_object_store(subjects.RESULTS_OBJECT_BUCKET, ObjectStoreConfig(
                        ttl=self._settings.results_ttl_s, replicas=n,
                        description="integrations job results above max_payload")),
                    self._settings.replicas, f"object store {subjects.RESULTS_OBJECT_BUCKET}")
        return self._objects
