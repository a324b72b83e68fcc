"""The execute pipeline: authenticate, resolve the org, validate against the capability
table, resolve the credential, call the provider, normalize (reference §3.2, fixed).

One pipeline serves every entry point: `integrations.v1.execute` (one reply), its streaming
twin `integrations.v1.execute.stream`, `/invoke` on a provider built-in (service/invoke/) and
the OpenAI-compatible routes (service/openai_compat.py). They authenticate and name the call in
the record, then call `run` (one answer) or `stream` (an accepted stream); both go through
`_prepare` (capability table, credential), so every path validates and resolves keys alike.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
from service.stream import ChatStream, ExecuteRenderer, StreamRenderer, success_reply
from service.transport import UpstreamResponse, UpstreamTransport


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A request that passed validation and has its credential: ready to go upstream."""

    spec: ProviderSpec
    op: OperationSpec
    params: ExecuteParams
    credential: Credential


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
    ) -> None:
        self._providers = providers
        self._transport = transport
        self._access = access
        self._credentials = credentials
        self._timeout_for = timeout_for

    # --- entry points -------------------------------------------------------------------------

    async def __call__(self, command: Command) -> Reply:
        caller = await self.authenticate(command)
        request = ExecuteRequest.model_validate_json(command.body)
        name_call(command.record, request)
        if request.stream:
            raise GatewayError(f"stream: true needs the streaming subject {EXECUTE_STREAM} (over HTTP the same "
                               "route answers with server-sent events)", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        return success_reply(command, await self.run(caller, request, command.record))

    async def open_stream(self, command: Command) -> ChatStream:
        """`integrations.v1.execute.stream`: the stream, once the upstream accepted it."""
        caller = await self.authenticate(command)
        request = ExecuteRequest.model_validate_json(command.body)
        name_call(command.record, request)
        return await self.stream(command, caller, request, ExecuteRenderer())

    # --- the shared pipeline ------------------------------------------------------------------

    async def authenticate(self, command: Command) -> Caller:
        caller = await self._access.caller(command.headers)
        command.record = CallRecord.start("execute", caller)
        return caller

    async def run(self, caller: Caller, request: ExecuteRequest, record: CallRecord,
                  timeout_s: float | None = None) -> dict[str, Any]:
        """The pipeline after authentication, shared by `/execute`, `/v1` and by `/invoke` on a
        provider built-in: validation against the capability table, credential, upstream call,
        normalized data. Fills the record's credential, served model and usage; the caller of
        `run` names the integration and operation in the record. Resilience steps (breaker,
        limits) belong in `_prepare` so that every path, streams included, gets them."""
        call = await self._prepare(caller, request, record, streaming=False)
        spec, op, params = call.spec, call.op, call.params
        upstream = spec.adapter.build(op, params, call.credential.api_key)
        response = await self._transport.send(spec.name, upstream, timeout_s or self._timeout_for(op.name),
                                              provider=spec.name, operation=op.name)
        if not 200 <= response.status < 300:
            raise spec.adapter.error(op, response.status, response.payload, response.headers)
        try:
            data = spec.adapter.parse(op, params, response.payload)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise GatewayError(f"{spec.name} returned a response the gateway cannot read: {exc}",
                               ErrorCategory.provider, reason=Reason.UPSTREAM_INVALID_RESPONSE,
                               provider=spec.name, operation=op.name) from None
        record.model_served = data.get("model")
        record.add_usage(data.get("usage") or {})
        return data

    async def stream(self, command: Command, caller: Caller, request: ExecuteRequest, renderer: StreamRenderer,
                     timeout_s: float | None = None) -> ChatStream:
        """The same steps up to the upstream's answer; a non-2xx answer is the same error as
        without streaming (so it is still a plain HTTP error, not an event). `timeout_s` bounds
        the wait for the answer and every gap in the stream, not its length."""
        record = command.record
        record.streamed = True
        call = await self._prepare(caller, request, record, streaming=True)
        spec, op, params = call.spec, call.op, call.params
        upstream, decoder = spec.adapter.build_stream(op, params, call.credential.api_key)
        opened = await self._transport.open_stream(spec.name, upstream, timeout_s or self._timeout_for(op.name),
                                                   provider=spec.name, operation=op.name)
        if isinstance(opened, UpstreamResponse):
            raise spec.adapter.error(op, opened.status, opened.payload, opened.headers)
        return ChatStream(command=command, record=record, provider=spec.name, op=op, params=params,
                          upstream=opened, decoder=decoder, renderer=renderer)

    async def _prepare(self, caller: Caller, request: ExecuteRequest, record: CallRecord, *,
                       streaming: bool) -> PreparedCall:
        params = request.params
        spec, op = resolve_operation(self._providers, request.provider, request.operation)
        if streaming and not (op.streaming and hasattr(spec.adapter, "build_stream")):
            streams = [o.name for o in spec.operations.values() if o.streaming and hasattr(spec.adapter,
                                                                                            "build_stream")]
            raise GatewayError(f"{spec.name} {op.name} cannot stream. Streaming operations: "
                               f"{', '.join(streams) or 'none'}", ErrorCategory.validation,
                               reason=Reason.STREAM_UNSUPPORTED, provider=spec.name, operation=op.name)
        validate_params(spec.name, op, params)

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
