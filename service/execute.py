"""The execute pipeline: authenticate, resolve the org, validate against the capability
table, resolve the credential, call the provider, normalize (reference §3.2, fixed).

One pipeline serves every entry point: `integrations.v1.execute` (one reply), its streaming
twin `integrations.v1.execute.stream`, `/invoke` on a provider built-in (service/invoke/) and
the OpenAI-compatible routes (service/openai_compat.py). They authenticate and name the call in
the record, then call `run` (one answer) or `stream` (an accepted stream); both go through
`_prepare` (capability table, credential), so every path validates and resolves keys alike.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams, ExecuteRequest
from contracts.subjects import EXECUTE_STREAM
from service.auth.access import Access, Caller
from service.calls import CallRecord
from service.commands import Command, Reply
from service.credentials import NO_CREDENTIAL, Credential, CredentialResolver, credential_missing
from service.errors import GatewayError
from service.providers.base import OperationSpec, ProviderSpec
from service.providers.capabilities import resolve_operation, validate_params
from service.resilience.breakers import Admission
from service.resilience.core import Resilience, token_estimate
from service.resilience.deadline import Deadline, bounded, deadline_exceeded
from service.resilience.failures import retryable_failure
from service.resilience.limits import Permit
from service.resilience.retry import fits
from service.stream import ChatStream, ExecuteRenderer, StreamRenderer, StreamSource, success_reply
from service.transport import UpstreamResponse, UpstreamTransport

log = logging.getLogger("symbia.integrations.execute")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A request that passed validation and has its credential: ready to go upstream."""

    spec: ProviderSpec
    op: OperationSpec
    params: ExecuteParams
    credential: Credential


@dataclass(frozen=True, slots=True)
class Candidate:
    """One provider and model the request may be served by: the one asked for (position 0), then
    its fallbacks in order."""

    request: ExecuteRequest
    position: int


@dataclass(slots=True)
class CallResult:
    """A served call: the normalized data, and headers for the reply (rate limits)."""

    data: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Served:
    result: Any
    call: PreparedCall
    candidate: Candidate
    admission: Admission | None
    permits: list[Permit]
    metadata: dict[str, Any]
    headers: dict[str, str]


def name_call(record: CallRecord, request: ExecuteRequest) -> None:
    """What an execute-style entry point records before the pipeline runs (so that a call
    rejected by validation is still attributed to its provider and operation)."""
    record.integration, record.operation, record.model_requested = (request.provider, request.operation,
                                                                    request.params.model)


class ExecuteService:
    request_id_prefix = "req"

    def __init__(
        self,
        *,
        providers: Mapping[str, ProviderSpec],
        transport: UpstreamTransport,
        access: Access,
        credentials: CredentialResolver,
        timeout_for: Callable[[str], float],
        resilience: Resilience,
    ) -> None:
        self._providers = providers
        self._transport = transport
        self._access = access
        self._credentials = credentials
        self._timeout_for = timeout_for
        self._resilience = resilience

    # --- entry points -------------------------------------------------------------------------

    async def __call__(self, command: Command) -> Reply:
        caller = await self.authenticate(command)
        request = ExecuteRequest.model_validate_json(command.body)
        name_call(command.record, request)
        if request.stream:
            raise GatewayError(f"stream: true needs the streaming subject {EXECUTE_STREAM} (over HTTP the same "
                               "route answers with server-sent events)", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        result = await self.run_call(caller, request, command.record,
                                     deadline=self.deadline(command, request.timeout))
        return success_reply(command, result.data, result.headers)

    async def open_stream(self, command: Command) -> ChatStream:
        """`integrations.v1.execute.stream`: the stream, once the upstream accepted it."""
        caller = await self.authenticate(command)
        request = ExecuteRequest.model_validate_json(command.body)
        name_call(command.record, request)
        return await self.stream(command, caller, request, ExecuteRenderer(),
                                 deadline=self.deadline(command, request.timeout))

    # --- the shared pipeline ------------------------------------------------------------------

    async def authenticate(self, command: Command) -> Caller:
        caller = await self._access.caller(command.headers)
        command.record = CallRecord.start("execute", caller)
        return caller

    def deadline(self, command: Command, body_timeout_ms: int | None = None) -> Deadline | None:
        """The caller's deadline (X-Timeout-Ms / x-deadline / a body `timeout`), if it gave one."""
        deadline = self._resilience.deadline(command.headers, command.started, body_timeout_ms)
        if deadline is not None:
            deadline.check()
        return deadline

    async def run(self, caller: Caller, request: ExecuteRequest, record: CallRecord,
                  timeout_s: float | None = None, deadline: Deadline | None = None) -> dict[str, Any]:
        return (await self.run_call(caller, request, record, timeout_s, deadline)).data

    async def run_call(self, caller: Caller, request: ExecuteRequest, record: CallRecord,
                       timeout_s: float | None = None, deadline: Deadline | None = None) -> CallResult:
        """The pipeline after authentication, shared by `/execute`, `/v1` and by `/invoke` on a
        provider built-in: validation against the capability table, limits, credential, circuit
        breaker, upstream call with retries and fallbacks, normalized data. Fills the record's
        credential, served provider and model and usage; the caller of `run` names the
        integration and operation in the record. `timeout_s` replaces the operation's upstream
        timeout; `deadline` bounds everything."""

        async def send(call: PreparedCall, limit_s: float) -> dict[str, Any]:
            spec, op, params = call.spec, call.op, call.params
            upstream = spec.adapter.build(op, params, call.credential.api_key)
            response = await self._transport.send(spec.name, upstream, limit_s, provider=spec.name,
                                                  operation=op.name)
            if not 200 <= response.status < 300:
                raise spec.adapter.error(op, response.status, response.payload, response.headers)
            try:
                return spec.adapter.parse(op, params, response.payload)
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                raise GatewayError(f"{spec.name} returned a response the gateway cannot read: {exc}",
                                   ErrorCategory.provider, reason=Reason.UPSTREAM_INVALID_RESPONSE,
                                   provider=spec.name, operation=op.name) from None

        attempts = self._attempts(caller, request, record, streaming=False, timeout_s=timeout_s,
                                  deadline=deadline, send=send)
        async with contextlib.aclosing(attempts):
            served = await anext(attempts)
        data = served.result
        if served.metadata:
            data["metadata"] = {**(data.get("metadata") or {}), **served.metadata}
        record.model_served = data.get("model")
        record.add_usage(data.get("usage") or {})
        for permit in served.permits:
            self._resilience.limiter.settle(permit, record.total_tokens)
        return CallResult(data, served.headers)

    async def stream(self, command: Command, caller: Caller, request: ExecuteRequest, renderer: StreamRenderer,
                     timeout_s: float | None = None, deadline: Deadline | None = None) -> ChatStream:
        """The same steps up to the upstream's answer; a non-2xx answer is the same error as
        without streaming (so it is still a plain HTTP error, not an event), and is retried or
        falls back the same way: a stream falls back only before it is accepted, never after its
        first chunk. `timeout_s` bounds the wait for the answer and every gap in the stream, not
        its length."""
        record = command.record
        record.streamed = True

        async def send(call: PreparedCall, limit_s: float):
            spec, op, params = call.spec, call.op, call.params
            upstream, decoder = spec.adapter.build_stream(op, params, call.credential.api_key)
            opened = await self._transport.open_stream(spec.name, upstream, limit_s, provider=spec.name,
                                                       operation=op.name)
            if isinstance(opened, UpstreamResponse):
                raise spec.adapter.error(op, opened.status, opened.payload, opened.headers)
            return opened, decoder

        attempts = self._attempts(caller, request, record, streaming=True, timeout_s=timeout_s,
                                  deadline=deadline, send=send)
        try:
            served = await anext(attempts)
        except BaseException:
            await attempts.aclose()
            raise
        breakers, limiter = self._resilience.breakers, self._resilience.limiter
        current = [served]

        def opened(served: _Served) -> StreamSource:
            upstream, decoder = served.result
            call = served.call
            return StreamSource(upstream, decoder, call.spec.name, call.op, call.params, served.metadata)

        async def reopen(exc: GatewayError) -> StreamSource:
            """The stream broke before its first output: the next attempt or fallback, if any."""
            current[0] = await attempts.athrow(exc)
            return opened(current[0])

        def on_end(exc: BaseException | None) -> None:
            served = current[0]
            for permit in served.permits:
                limiter.settle(permit, record.total_tokens)
            if exc is not None and served.admission is not None:   # a mid-stream failure counts like any other
                breakers.finished_soon(Admission(served.admission.name, False, served.admission.meta), exc)
            closing = asyncio.get_running_loop().create_task(attempts.aclose())
            closing.add_done_callback(_ignore)

        return ChatStream(command=command, record=record, source=opened(served), renderer=renderer,
                          headers=served.headers, on_end=on_end, reopen=reopen)

    # --- resilience: limits, circuit breaker, retries, fallbacks ---------------------------------

    def _candidates(self, org: str, request: ExecuteRequest, streaming: bool) -> list[Candidate]:
        """The request, then its fallbacks (the request's own, else the org's default chain for
        the operation). The caller's own fallbacks must be valid (400 otherwise); entries of the
        org's chain that cannot serve this request are skipped."""
        self._validate(request, streaming)
        candidates = [Candidate(request, 0)]
        explicit = request.fallbacks is not None
        targets = request.fallbacks if explicit else self._resilience.default_fallbacks(org, request.operation)
        seen = {(request.provider, request.params.model)}
        for index, target in enumerate(targets or ()):
            alternative = request.model_copy(update={
                "provider": target.provider, "params": request.params.model_copy(update={"model": target.model}),
                "fallbacks": [], "credentialId": None})
            try:
                self._validate(alternative, streaming)
            except GatewayError as exc:
                if explicit:
                    raise GatewayError(f"fallbacks[{index}]: {exc.message}", exc.category, status=exc.status,
                                       reason=exc.reason, provider=target.provider,
                                       operation=request.operation) from None
                continue
            if (target.provider, target.model) not in seen:
                seen.add((target.provider, target.model))
                candidates.append(Candidate(alternative, len(candidates)))
        return candidates

    def _validate(self, request: ExecuteRequest, streaming: bool) -> None:
        spec, op = resolve_operation(self._providers, request.provider, request.operation)
        if streaming and not (op.streaming and hasattr(spec.adapter, "build_stream")):
            streams = [o.name for o in spec.operations.values() if o.streaming and hasattr(spec.adapter,
                                                                                            "build_stream")]
            raise GatewayError(f"{spec.name} {op.name} cannot stream. Streaming operations: "
                               f"{', '.join(streams) or 'none'}", ErrorCategory.validation,
                               reason=Reason.STREAM_UNSUPPORTED, provider=spec.name, operation=op.name)
        validate_params(spec.name, op, request.params)

    async def _attempts(self, caller: Caller, request: ExecuteRequest, record: CallRecord, *, streaming: bool,
                        timeout_s: float | None, deadline: Deadline | None,
                        send: Callable[[PreparedCall, float], Awaitable[T]]) -> AsyncIterator[_Served]:
        """Yield the first answer `send` gets from a candidate. Per request: the caller's user and
        org limits. Per candidate: its credential, its provider's limits and circuit, then
        attempts with backoff while the failure is retryable and the deadline leaves time. A
        failure that is not retryable ends the request; a retryable one, or an open circuit,
        moves on to the next candidate; when none is left the last failure is raised.

        A consumer that finds the answer failed after all (a stream that breaks before its first
        output) throws the failure in (`athrow`): it counts like a failed attempt, and the next
        answer is yielded. Limits are settled by the consumer (`_Served.permits`), or here when
        nothing was served."""
        res, limiter, breakers = self._resilience, self._resilience.limiter, self._resilience.breakers
        candidates = self._candidates(caller.org, request, streaming)
        caller_limits = limiter.caller_limits(caller, tokens=True)
        estimate = token_estimate(request.operation, request.params) if limiter.enabled else 0
        wants_tokens = any(limit.unit == "tokens" for limit in caller_limits)
        caller_permit = await limiter.acquire(caller_limits, estimate if wants_tokens else 0)
        attempts, tried = 0, []
        failure: GatewayError | None = None
        served = False
        try:
            for candidate in candidates:
                if deadline is not None:
                    deadline.check()
                try:
                    call = await self._prepare(caller, candidate.request, record, streaming=streaming)
                except GatewayError as exc:
                    if candidate.position == 0:
                        raise
                    log.info("fallback %s/%s skipped: %s", candidate.request.provider,
                             candidate.request.params.model, exc.message)
                    continue
                spec, op = call.spec, call.op
                try:
                    provider_permit = await limiter.acquire(limiter.provider_limits(spec.name, tokens=True), estimate)
                except GatewayError as exc:
                    failure = exc
                    continue
                tried.append(f"{spec.name}/{call.params.model}")
                base_timeout = timeout_s or self._timeout_for(op.name)
                circuit = breakers.provider_circuit(spec.name, call.credential.credential_id)
                retry = 0
                try:
                    while True:
                        limit_s, cut = bounded(base_timeout, deadline)
                        if limit_s <= 0:
                            raise deadline_exceeded(f"{spec.name} answered", spec.name)
                        try:
                            admission = await breakers.admit(
                                circuit, provider=spec.name, hold_s=limit_s,
                                credential_id=call.credential.credential_id if breakers.per_credential else None,
                                org=caller.org if breakers.per_credential else None)
                        except GatewayError as exc:      # open circuit: the next candidate, if any
                            failure = exc
                            break
                        attempts += 1
                        record.attempts = attempts
                        try:
                            result = await send(call, limit_s)
                        except GatewayError as exc:
                            await breakers.finished(admission, exc, cut_short=cut)
                            error = exc
                        except BaseException as exc:     # cancelled (the worker is stopping), or a bug
                            breakers.finished_soon(admission, exc)
                            raise
                        else:
                            await breakers.finished(admission, None)
                            if candidate.position:
                                record.integration = spec.name
                            metadata: dict[str, Any] = {"attempts": attempts}
                            if candidate.position:
                                metadata["fallback"] = {"position": candidate.position, "requested": {
                                    "provider": request.provider, "model": request.params.model}}
                            served = True
                            try:
                                yield _Served(result, call, candidate, admission, [caller_permit, provider_permit],
                                              metadata, _tighter(caller_permit.headers, provider_permit.headers))
                                return
                            except GatewayError as exc:  # the answer broke before its first output
                                served = False
                                await breakers.finished(Admission(circuit, False, admission.meta if admission
                                                                  else None), exc)
                                error = exc
                        if cut and error.category is ErrorCategory.timeout:
                            raise deadline_exceeded(f"{spec.name} answered", spec.name) from None
                        if not retryable_failure(error):
                            raise error
                        failure = error
                        delay = (res.retry.delay(retry + 1, error.headers)
                                 if retry < res.retry.max_retries else None)
                        if delay is None or not fits(deadline.remaining() if deadline else None, delay):
                            break
                        retry += 1
                        await asyncio.sleep(delay)
                finally:
                    if not served:
                        limiter.settle(provider_permit, 0)
        finally:
            if not served:
                limiter.settle(caller_permit, 0)
        if failure is None:   # cannot happen: the first candidate either raised or recorded a failure
            failure = GatewayError("No provider could serve the request", ErrorCategory.provider, status=503,
                                   reason=Reason.UPSTREAM_ERROR, provider=request.provider)
        if attempts > 1 or len(tried) > 1:
            failure.message = f"{failure.message} (after {attempts} attempt{'s' if attempts != 1 else ''}: " \
                              f"{', '.join(tried)})"
        raise failure

    async def _prepare(self, caller: Caller, request: ExecuteRequest, record: CallRecord, *,
                       streaming: bool) -> PreparedCall:
        """Validation against the capability table and the credential of one candidate."""
        params = request.params
        self._validate(request, streaming)
        spec, op = resolve_operation(self._providers, request.provider, request.operation)
        credential = NO_CREDENTIAL
        if spec.needs_credential:
            found = await self._credentials.resolve(caller, spec.identity_key, request.credentialId)
            if found is None or not found.api_key:
                raise credential_missing(self._credentials, spec.name, op.name)
            credential = found
        record.credential_source, record.credential_id = credential.source, credential.credential_id
        return PreparedCall(spec, op, params, credential)

    @property
    def providers(self) -> Mapping[str, ProviderSpec]:
        return self._providers

    @property
    def resilience(self) -> Resilience:
        return self._resilience


def _tighter(first: dict[str, str], second: dict[str, str]) -> dict[str, str]:
    """The X-RateLimit-* set that leaves the smaller share of its limit."""
    if not second:
        return first
    if not first:
        return second

    def share(headers: dict[str, str]) -> float:
        try:
            return int(headers["x-ratelimit-remaining"]) / max(1, int(headers["x-ratelimit-limit"]))
        except (KeyError, ValueError):
            return 1.0

    return second if share(second) < share(first) else first


def _ignore(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
