"""Runs one delivered job message: check it, claim it, run the twin's handler, publish the result.

The status record (KV, compare-and-set) decides whether a delivery runs:

* no record: create it `running` and run (a job published straight to the stream);
* queued: CAS to `running` and run (a cancel racing us wins or loses atomically);
* running from this very message (same stream sequence): a redelivery, so its worker was lost.
  If that worker published the result already, finish the record from it; else run again;
* running from another message with the same id (published twice): skip, the first one runs it;
* finished or cancelled: skip.

The result is published before the record is finished and before the message is
acknowledged, so a worker lost after the upstream call cannot lose the result; a worker lost
during the call means the job runs again on another worker (at-least-once), up to
INTEGRATIONS_JOB_MAX_ATTEMPTS deliveries.

A job the gateway refuses *for now* (a rate limit, or an open circuit) is not failed: a batch
is the place to wait for capacity. Its record goes back to `queued` and the message is handed
back with the refusal's Retry-After (at most INTEGRATIONS_JOB_DEFER_MAX_S), until the job is
older than INTEGRATIONS_JOB_MAX_AGE_S; then the refusal becomes its result.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from contracts.jobs import JOB_ID, reply_subject_problem
from service.auth.access import AuthenticatedHeaders, Caller
from service.commands import Command, Handler, Reply, error_reply
from service.errors import GatewayError
from service.jobs.grants import JobSigner
from service.jobs.kinds import JobHandler
from service.jobs.records import JobRecord
from service.jobs.store import JobStore
from service.settings import Settings

log = logging.getLogger("symbia.integrations.jobs")

# Headers the runner consumes; the rest (tracing, caller labels) reach the handler as sent.
# A deadline belongs to a waiting caller: a job has none, so a publisher's x-deadline or
# x-timeout-ms is dropped (the request body's own `timeout` counts from when the job starts).
_JOB_ONLY = {h.JOB_GRANT, h.JOB_SIGNATURE, h.REPLY_TO, h.NATS_MSG_ID, "Nats-Expected-Stream",
             h.API_KEY, h.AUTHORIZATION, h.COOKIE, h.PAYLOAD_REF, h.PROGRESS, h.START_BY,
             h.DEADLINE, h.TIMEOUT_MS}

# How a job runs its handler: the worker's observed pipeline (run_command, then usage observers).
Execute = Callable[[Handler, Command], Awaitable[Reply]]


class DeferJob(Exception):
    """Hand the message back to JetStream to be delivered again after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"deferred {delay_s:g}s")
        self.delay_s = delay_s


def retry_later(reply: Reply) -> float | None:
    """Seconds to wait when the reply is the gateway's "not now" (rate limited, circuit open)."""
    if reply.status not in (429, 503):
        return None
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not (body.get("category") == "rate_limit" or body.get("reason") == "circuit_open"):
        return None
    try:
        return max(0.1, float(reply.headers.get("retry-after") or 1.0))
    except ValueError:
        return 1.0


@dataclass(slots=True)
class IncomingJob:
    kind: str
    headers: Mapping[str, str]
    body: bytes
    seq: int                    # stream sequence
    deliveries: int             # 1 on first delivery
    published_at: float         # epoch seconds, stamped by the NATS server


class JobRunner:
    def __init__(self, *, store: JobStore, signer: JobSigner, handlers: Mapping[str, JobHandler], execute: Execute,
                 max_attempts: int, worker_id: str, settings: Settings | None = None) -> None:
        self._settings = settings or Settings(_env_file=None)   # job_max_age_s, job_defer_max_s, read live
        self._store = store
        self._signer = signer
        self._handlers = handlers
        self._execute = execute
        self._max_attempts = max_attempts
        self._worker_id = worker_id

    async def run(self, job: IncomingJob) -> None:
        """Returning means the message may be acknowledged; an exception means redeliver it."""
        headers = job.headers
        job_id = headers.get(h.NATS_MSG_ID) or headers.get(h.REQUEST_ID) or ""
        reply_to = headers.get(h.REPLY_TO) or None
        if not JOB_ID.match(job_id) or headers.get(h.REQUEST_ID) not in (None, job_id):
            # No address for a result: tell the replyTo subject if it is a usable one, else only the log.
            log.warning("job message %d has no usable id (Nats-Msg-Id / x-request-id); dropped", job.seq)
            if reply_to and not reply_subject_problem(reply_to):
                reply = error_reply(GatewayError(
                    "A job needs an id: Nats-Msg-Id (and x-request-id, if sent, equal to it) matching "
                    "[A-Za-z0-9_-]{1,128}", ErrorCategory.validation, reason=Reason.INVALID_REQUEST),
                    Command(job.body, {}, "-"))
                await self._store.publish_to(reply_to, reply.status, reply.body, reply.headers)
            return
        if reply_to and (problem := reply_subject_problem(reply_to)):
            # Never publish there; the refusal still goes to results.<id>.
            await self._reject(job, job_id, None, GatewayError(f"Invalid x-reply-to: {problem}",
                                                               ErrorCategory.validation,
                                                               reason=Reason.INVALID_REQUEST))
            return
        try:
            kind = self._handler(job.kind)
            caller = self._signer.verify(headers.get(h.JOB_GRANT), headers.get(h.JOB_SIGNATURE), job_id, job.kind,
                                         reply_to, job.body, job.published_at)
        except GatewayError as exc:
            await self._reject(job, job_id, reply_to, exc)
            return
        claimed = await self._claim(job, job_id, caller, reply_to)
        if claimed is None:
            return
        record, revision = claimed
        run_headers = {k: v for k, v in headers.items() if k not in _JOB_ONLY}
        run_headers.update({h.REQUEST_ID: job_id, h.ORG_ID: caller.org})
        command = Command(job.body, AuthenticatedHeaders(run_headers, caller), job_id)
        reply = await self._execute(kind.handler, command)
        delay = retry_later(reply)
        if delay is not None:
            delay = min(delay, self._settings.job_defer_max_s)
            if time.time() + delay - job.published_at < self._settings.job_max_age_s:
                record.status = "queued"
                if await self._store.update(record, revision) is not None:
                    log.info("job %s: %s; runs again in %.1fs", job_id, reply.status, delay)
                    raise DeferJob(delay)
        await self._finish(record, revision, reply)

    def _handler(self, kind: str) -> JobHandler:
        handler = self._handlers.get(kind)
        if handler is None:
            raise GatewayError(f"Jobs of kind {kind!r} are not available in this gateway (available: "
                               f"{', '.join(sorted(self._handlers)) or 'none'})", ErrorCategory.validation,
                               reason=Reason.JOB_KIND_UNAVAILABLE)
        return handler

    async def _claim(self, job: IncomingJob, job_id: str, caller: Caller,
                     reply_to: str | None) -> tuple[JobRecord, int] | None:
        for _ in range(10):
            found = await self._store.get(job_id)
            if found is None:
                record = JobRecord.new(job_id, job.kind, "running", caller.org, caller.principal.id, reply_to)
                self._started(record, job)
                revision = await self._store.create(record)
                if revision is not None:
                    return record, revision
                continue                                    # created meanwhile: decide again
            record, revision = found
            if record.org != caller.org:
                log.warning("job %s: the id belongs to another organization; message %d dropped", job_id, job.seq)
                return None
            if record.status == "queued":
                self._started(record, job)
            elif record.status == "running" and record.seq == job.seq:
                if await self._finish_from_published(record, revision):
                    return None
                if job.deliveries > self._max_attempts:
                    await self._give_up(record, revision, job)
                    return None
                log.warning("job %s: worker %s was lost; running it again (delivery %d)", job_id, record.worker,
                            job.deliveries)
                self._started(record, job)
            else:
                return None     # finished, cancelled, or running from another message with the same id
            revision = await self._store.update(record, revision)
            if revision is not None:
                return record, revision
        log.warning("job %s: status record kept changing; message %d will be redelivered", job_id, job.seq)
        raise RuntimeError("job status contention")

    def _started(self, record: JobRecord, job: IncomingJob) -> None:
        record.status, record.started_at, record.seq = "running", time.time(), job.seq
        record.attempts, record.worker = job.deliveries, self._worker_id

    async def _finish(self, record: JobRecord, revision: int, reply: Reply) -> None:
        record.finish("succeeded" if reply.status < 400 else "failed", reply.status)
        await self._store.publish_result(record, reply.status, reply.body, reply.headers)
        if await self._store.update(record, revision) is None:
            # Only a redelivery of this very message can have changed it; it saw no result yet
            # and ran again, and the results stream kept the first result (same Nats-Msg-Id).
            log.warning("job %s: status changed while it ran", record.id)

    async def _finish_from_published(self, record: JobRecord, revision: int) -> bool:
        """The previous attempt published its result and was lost before recording it."""
        result = await self._store.result(record.id)
        if result is None:
            return False
        record.finish("succeeded" if result.status < 400 else "failed", result.status)
        await self._store.update(record, revision)
        return True

    async def _give_up(self, record: JobRecord, revision: int, job: IncomingJob) -> None:
        exc = GatewayError(f"The job's worker was lost {job.deliveries - 1} times; it is not run again",
                           ErrorCategory.internal, reason=Reason.JOB_ATTEMPTS_EXHAUSTED, retryable=False)
        reply = error_reply(exc, Command(job.body, {}, record.id))
        record.finish("failed", reply.status)
        await self._store.publish_result(record, reply.status, reply.body, reply.headers)
        await self._store.update(record, revision)

    async def _reject(self, job: IncomingJob, job_id: str, reply_to: str | None, exc: GatewayError) -> None:
        """A job refused before it ran (bad grant, unknown kind): its result, unless the id is taken."""
        record = JobRecord.new(job_id, job.kind, "failed", None, None, reply_to)
        reply = error_reply(exc, Command(job.body, {}, job_id))
        record.finish("failed", reply.status)
        if await self._store.create(record) is None:
            log.warning("job %s refused (%s); the id is in use, so no result is published", job_id, exc.reason)
            return
        try:
            await self._store.publish_result(record, reply.status, reply.body, reply.headers)
        except Exception:
            await self._store.delete(job_id)
            raise
