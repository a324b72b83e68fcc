"""The execute pipeline: authenticate, resolve the org, validate against the capability
table, resolve the credential, call the provider, normalize (reference §3.2, fixed)."""

from collections.abc import Mapping

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteRequest
from service.auth.principal import Authenticator, resolve_org
from service.commands import Command, Reply
from service.credentials import CredentialResolver
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
        authenticator: Authenticator,
        credentials: CredentialResolver,
        timeout_for,
        default_org: str,
    ) -> None:
        self._providers = providers
        self._transport = transport
        self._authenticator = authenticator
        self._credentials = credentials
        self._timeout_for = timeout_for
        self._default_org = default_org

    async def __call__(self, command: Command) -> Reply:
        principal = await self._authenticator.authenticate(command.headers)
        org = resolve_org(principal, command.headers.get(h.ORG_ID), self._default_org)
        request = ExecuteRequest.model_validate_json(command.body)
        params = request.params
        spec, op = resolve_operation(self._providers, request.provider, request.operation)
        validate_params(spec.name, op, params)
        credential = await self._credentials.resolve(principal, org, spec, request.credentialId, op.name)

        call = spec.adapter.build(op, params, credential.api_key)
        response = await self._transport.send(spec.name, call, self._timeout_for(op.name),
                                              provider=spec.name, operation=op.name)
        if not 200 <= response.status < 300:
            raise spec.adapter.error(op, response.status, response.payload, response.headers)
        try:
            data = spec.adapter.parse(op, params, response.payload)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise GatewayError(f"{spec.name} returned a response the gateway cannot read: {exc}",
                               ErrorCategory.provider, reason=Reason.UPSTREAM_INVALID_RESPONSE,
                               provider=spec.name, operation=op.name) from None
        return command.json_reply(200, {"success": True, "data": data, "requestId": command.request_id,
                                        "durationMs": command.elapsed_ms()})
