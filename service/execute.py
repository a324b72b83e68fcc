"""The execute pipeline: authenticate, resolve the org, validate against the capability
table, resolve the credential, call the provider, normalize (reference §3.2, fixed)."""

from collections.abc import Callable, Mapping
from typing import Any

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteRequest
from service.auth.access import Access, Caller
from service.calls import CallRecord
from service.commands import Command, Reply
from service.credentials import NO_CREDENTIAL, CredentialResolver, credential_missing
from service.errors import GatewayError
from service.providers.base import ProviderSpec
from service.providers.capabilities import resolve_operation, validate_params
from service.transport import UpstreamTransport


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

    async def __call__(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        record = command.record = CallRecord.start("execute", caller)
        request = ExecuteRequest.model_validate_json(command.body)
        record.integration, record.operation, record.model_requested = (request.provider, request.operation,
                                                                        request.params.model)
        data = await self.run(caller, request, record)
        return command.json_reply(200, {"success": True, "data": data, "requestId": command.request_id,
                                        "durationMs": command.elapsed_ms()})

    async def run(self, caller: Caller, request: ExecuteRequest, record: CallRecord,
                  timeout_s: float | None = None) -> dict[str, Any]:
        """The pipeline after authentication, shared by `/execute` and by `/invoke` on a provider
        built-in: validation against the capability table, credential, upstream call, normalized
        data. Fills the record's credential, served model and usage; the caller of `run` names
        the integration and operation in the record. Resilience steps (breaker, limits) belong
        here so that both paths get them."""
        params = request.params
        spec, op = resolve_operation(self._providers, request.provider, request.operation)
        validate_params(spec.name, op, params)

        credential = NO_CREDENTIAL
        if spec.needs_credential:
            found = await self._credentials.resolve(caller, spec.identity_key, request.credentialId)
            if found is None or not found.api_key:
                raise credential_missing(self._credentials, spec.name, op.name)
            credential = found
        record.credential_source, record.credential_id = credential.source, credential.credential_id

        call = spec.adapter.build(op, params, credential.api_key)
        response = await self._transport.send(spec.name, call, timeout_s or self._timeout_for(op.name),
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
