"""Request-reply handlers of jobs: submit a batch, read a job, cancel a queued one, get a grant.

Subjects integrations.v1.jobs.submit / .get / .cancel / .grant (the first three behind
POST / GET / DELETE /api/integrations/jobs). Reads are scoped to the caller's resolved
organization: a job of another organization is "not found".
"""

import time
import uuid
from collections.abc import Callable, Mapping

import orjson
from pydantic import ValidationError

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason, envelope_json, error_envelope
from contracts.jobs import GrantRequest, JobBatch, JobRef, JobSpec
from service.auth.access import Access, Caller
from service.commands import Command, Reply, validation_error
from service.errors import GatewayError
from service.jobs.grants import Grant, JobSigner
from service.jobs.kinds import JobHandler
from service.jobs.records import JobRecord
from service.jobs.store import JobStore, bounded_gather

# Caller headers a job keeps (tracing and caller labels; never credentials, nor the submitter's
# deadline: x-deadline / x-timeout-ms bound the submit request, not the job that runs later).
FORWARDED_HEADERS = (h.TRACEPARENT, h.TRACE_ID, h.SERVICE_ID, h.ORIGIN, h.CALLER)
# Grants minted for a submission only need to outlive the publish that follows.
SUBMIT_GRANT_TTL_S = 300.0


def not_found(job_id: str, caller: Caller) -> GatewayError:
    return GatewayError(f"No job {job_id} in organization {caller.org}", ErrorCategory.not_found,
                        reason=Reason.NOT_FOUND)


def cancelled_envelope(job_id: str) -> bytes:
    return envelope_json(error_envelope("The job was cancelled before it started", ErrorCategory.validation,
                                        reason=Reason.JOB_CANCELLED, request_id=job_id, duration_ms=0))


def expired_envelope(job_id: str, max_age_s: float) -> bytes:
    return envelope_json(error_envelope(
        f"No worker took the job within INTEGRATIONS_JOB_MAX_AGE_S ({max_age_s:g} s); JetStream dropped it unrun",
        ErrorCategory.timeout, reason=Reason.JOB_EXPIRED, request_id=job_id, duration_ms=0, retryable=True))


# A queued record is declared expired this long after the queue's max age: JetStream's expiry of
# the message runs on the server's clock and timer, not exactly at created_at + max_age.
EXPIRY_GRACE_S = 5.0


def job_message_headers(job_id: str, grant: Grant, signature: str, reply_to: str | None,
                        forwarded: Mapping[str, str]) -> dict[str, str]:
    out = {k: v for k in FORWARDED_HEADERS if (v := forwarded.get(k))}
    out.update({h.NATS_MSG_ID: job_id, h.REQUEST_ID: job_id, h.JOB_GRANT: grant.token, h.JOB_SIGNATURE: signature})
    if reply_to:
        out[h.REPLY_TO] = reply_to
    return out


class JobsService:
    request_id_prefix = "req"

    def __init__(self, *, access: Access, handlers: Mapping[str, JobHandler], grant_ttl_s: float,
                 batch_max: int, max_age_s: float = 86400.0, clock: Callable[[], float] = time.time) -> None:
        self._access = access
        self._max_age_s = max_age_s
        self._clock = clock
        self._handlers = handlers       # the live mapping: kinds may be added after construction
        self._grant_ttl_s = grant_ttl_s
        self._batch_max = batch_max
        self._job_store: JobStore | None = None
        self._job_signer: JobSigner | None = None

    def open(self, store: JobStore, signer: JobSigner) -> None:
        """Bound once the worker is connected and its signing key loaded."""
        self._job_store, self._job_signer = store, signer

    def _store(self) -> JobStore:
        if self._job_store is None:
            raise GatewayError("Jobs are not available yet on this worker", ErrorCategory.internal, status=503,
                               retryable=True, reason=Reason.BUS_UNAVAILABLE)
        return self._job_store

    @property
    def _signer(self) -> JobSigner:
        self._store()
        assert self._job_signer is not None
        return self._job_signer

    def handler_for(self, kind: str) -> JobHandler:
        handler = self._handlers.get(kind)
        if handler is None:
            available = ", ".join(sorted(self._handlers)) or "none"
            raise GatewayError(f"Jobs of kind {kind!r} are not available in this gateway (available: {available})",
                               ErrorCategory.validation, reason=Reason.JOB_KIND_UNAVAILABLE)
        return handler

    # --- submit ---------------------------------------------------------------------------

    async def submit(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        batch = JobBatch.model_validate_json(command.body)
        if len(batch.jobs) > self._batch_max:
            raise GatewayError(f"A batch holds at most {self._batch_max} jobs (got {len(batch.jobs)})",
                               ErrorCategory.validation, status=413, reason=Reason.BATCH_TOO_LARGE)
        planned = [self._plan(i, spec) for i, spec in enumerate(batch.jobs)]
        ids = [job_id for job_id, _, _ in planned]
        if len(set(ids)) != len(ids):
            raise GatewayError("Job ids must be unique within a batch", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        store = self._store()
        records = [JobRecord.new(job_id, spec.kind, "queued", caller.org, caller.principal.id, spec.replyTo)
                   for job_id, spec, _ in planned]
        created = await bounded_gather(store.create(r) for r in records)
        infos, to_publish, conflicts, mine = [], [], [], []
        for record, revision, (_, spec, body) in zip(records, created, planned, strict=True):
            if revision is not None:
                mine.append(record.id)
                to_publish.append((record, spec, body))
                infos.append(record.info())
                continue
            existing = await store.get(record.id)
            if existing is None or existing[0].org != caller.org:
                conflicts.append(record.id)
                continue
            known = existing[0]
            infos.append({**known.info(), "duplicate": True})
            if known.status == "queued" and known.kind == spec.kind:
                # Maybe never published (a failed submit): publishing again is harmless (same Nats-Msg-Id).
                to_publish.append((known, spec, body))
        if conflicts:
            await bounded_gather(store.delete(job_id) for job_id in mine)
            raise GatewayError(f"Job ids already in use: {', '.join(conflicts[:10])}", ErrorCategory.validation,
                               status=409, reason=Reason.JOB_ID_CONFLICT)
        grant = self._signer.mint(caller, SUBMIT_GRANT_TTL_S)
        try:
            await bounded_gather(self._enqueue(grant, record, spec, body, command.headers)
                                 for record, spec, body in to_publish)
        except Exception as exc:
            raise GatewayError("The jobs could not all be queued; submit the same batch again (same ids) to queue "
                               "the rest", ErrorCategory.internal, status=503, retryable=True,
                               reason=Reason.BUS_UNAVAILABLE) from exc
        return command.json_reply(202, {"success": True, "jobs": infos, "requestId": command.request_id,
                                        "durationMs": command.elapsed_ms()})

    def _plan(self, index: int, spec: JobSpec) -> tuple[str, JobSpec, bytes]:
        try:
            handler = self.handler_for(spec.kind)
            handler.request_model.model_validate(spec.request)
        except GatewayError as exc:
            raise GatewayError(f"jobs[{index}]: {exc.message}", exc.category, status=exc.status,
                               reason=exc.reason) from None
        except ValidationError as exc:
            problem = validation_error(exc)
            detail = problem.message.removeprefix("Invalid request: ")
            raise GatewayError(f"Invalid jobs[{index}].request: {detail}", ErrorCategory.validation,
                               reason=problem.reason) from None
        job_id = spec.id or f"{handler.request_id_prefix}_{uuid.uuid4().hex}"
        return job_id, spec, orjson.dumps(spec.request)

    async def _enqueue(self, grant: Grant, record: JobRecord, spec: JobSpec, body: bytes,
                       forwarded: Mapping[str, str]) -> None:
        signature = self._signer.sign(grant, record.id, spec.kind, record.reply_to, body)
        await self._store().enqueue(spec.kind, body, job_message_headers(record.id, grant, signature,
                                                                         record.reply_to, forwarded))

    # --- read and cancel ------------------------------------------------------------------

    async def get(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        job_id = JobRef.model_validate_json(command.body or b"{}").id
        record, revision = await self._own(job_id, caller)
        record = await self._expire_if_dropped(record, revision)
        return command.json_reply(200, await self._view(record))

    async def cancel(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        job_id = JobRef.model_validate_json(command.body or b"{}").id
        store = self._store()
        for _ in range(5):
            record, revision = await self._own(job_id, caller)
            record = await self._expire_if_dropped(record, revision)
            if record.status == "cancelled":
                return command.json_reply(200, await self._view(record))
            if record.status != "queued":
                raise GatewayError(f"Job {job_id} is {record.status}; only queued jobs can be cancelled",
                                   ErrorCategory.validation, status=409, reason=Reason.JOB_NOT_CANCELLABLE)
            record.finish("cancelled", 409)
            if await store.update(record, revision) is not None:
                # The record decides (a worker that takes the job later skips it); the result tells subscribers.
                await store.publish_result(record, 409, cancelled_envelope(job_id), {})
                return command.json_reply(200, await self._view(record))
        raise GatewayError(f"Job {job_id} kept changing; try again", ErrorCategory.internal, status=503,
                           retryable=True, reason=Reason.INTERNAL)

    async def _expire_if_dropped(self, record: JobRecord, revision: int) -> JobRecord:
        """A job still `queued` past the queue's max age was dropped by JetStream unrun: nothing
        will ever finish it, so the first reader does (failed, `job_expired`, result published
        like any other). Compare-and-set: a worker that took the job at the last moment wins."""
        if record.status != "queued" or self._clock() - record.created_at < self._max_age_s + EXPIRY_GRACE_S:
            return record
        store = self._store()
        record.finish("failed", 504)
        if await store.update(record, revision) is None:
            found = await store.get(record.id)
            return found[0] if found else record
        await store.publish_result(record, 504, expired_envelope(record.id, self._max_age_s), {})
        return record

    async def _own(self, job_id: str, caller: Caller) -> tuple[JobRecord, int]:
        found = await self._store().get(job_id)
        if found is None or found[0].org != caller.org:
            raise not_found(job_id, caller)
        return found

    async def _view(self, record: JobRecord) -> dict:
        view = {"success": True, **record.info()}
        if record.terminal:
            result = await self._store().result(record.id)
            if result is not None:
                view["result"] = orjson.Fragment(result.body) if result.body else None
        return view

    # --- grants ---------------------------------------------------------------------------

    async def grant(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        request = GrantRequest.model_validate_json(command.body or b"{}")
        ttl = min(float(request.ttlSeconds or self._grant_ttl_s), self._grant_ttl_s)
        grant = self._signer.mint(caller, ttl)
        return command.json_reply(200, {"success": True, "grant": grant.token, "jobKey": grant.job_key.hex(),
                                        "org": caller.org, "principalId": caller.principal.id,
                                        "expiresAt": grant.expires_iso})
