"""Handlers of the resilience routes (contracts/resilience.py): circuit-breaker status and resets,
org policies (rate-limit overrides, default fallback chains)."""

from collections.abc import Mapping

from contracts.envelope import ErrorCategory, Reason
from contracts.resilience import (
    BREAKER_DESCRIPTION,
    BreakerInfo,
    BreakerResetAllRequest,
    BreakerResetRequest,
    OrgPolicy,
    OrgPolicyReply,
    OrgPolicyWrite,
    OrgRef,
)
from service.auth.access import Access, Caller, require_admin
from service.auth.principal import resolve_org
from service.commands import Command, Reply
from service.discovery import parse_query
from service.errors import GatewayError
from service.providers.base import ProviderSpec
from service.resilience.breaker import CLOSED, Circuit
from service.resilience.breakers import iso
from service.resilience.core import Resilience
from service.resilience.names import provider_circuit, valid_circuit


class ResilienceService:
    request_id_prefix = "req"

    def __init__(self, *, access: Access, resilience: Resilience, providers: Mapping[str, ProviderSpec]) -> None:
        self._access = access
        self._resilience = resilience
        self._providers = providers

    # --- circuit breakers -------------------------------------------------------------------------

    def _info(self, circuit: Circuit, admin: bool) -> BreakerInfo:
        breakers = self._resilience.breakers
        retry_after = None
        if circuit.state != CLOSED:
            retry_after = round(circuit.retry_after(breakers.policy, breakers.now()), 3)
        return BreakerInfo(state=circuit.state, failures=circuit.failures, lastFailure=iso(circuit.last_failure),
                           retryAfterS=retry_after, provider=circuit.provider or None,
                           credentialId=circuit.credential_id if admin else None, org=circuit.org)

    def _status(self, caller: Caller) -> dict[str, BreakerInfo]:
        """Every provider's circuit (closed unless recorded otherwise), then the other circuits
        the caller may see: global ones and its org's (admins: all)."""
        admin = caller.principal.is_admin
        circuits = self._resilience.breakers.circuits()
        status = {}
        for provider in self._providers:
            name = provider_circuit(provider)
            status[name] = self._info(circuits.pop(name, None) or Circuit(provider=provider), admin)
        for name in sorted(circuits):
            circuit = circuits[name]
            if admin or circuit.org is None or circuit.org == caller.org:
                status[name] = self._info(circuit, admin)
        return status

    def _reply(self, command: Command, caller: Caller, message: str | None = None) -> Reply:
        status = {name: info.model_dump(exclude_none=True) for name, info in self._status(caller).items()}
        if message is None:
            return command.json_reply(200, {"status": status, "description": BREAKER_DESCRIPTION})
        return command.json_reply(200, {"success": True, "message": message, "status": status})

    async def breaker_status(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        parse_query(BreakerResetAllRequest, command.body)
        return self._reply(command, caller)

    async def breaker_reset_all(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        require_admin(caller, "reset circuit breakers")
        parse_query(BreakerResetAllRequest, command.body)
        await self._resilience.breakers.reset_all()
        return self._reply(command, caller, "All circuit breakers reset")

    async def breaker_reset(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        require_admin(caller, "reset a circuit breaker")
        name = parse_query(BreakerResetRequest, command.body).provider
        if valid_circuit(name):   # other names cannot exist: accepted, nothing to reset (as the original)
            await self._resilience.breakers.reset(name)
        return self._reply(command, caller, f"Circuit breaker reset for {name}")

    # --- org policies -----------------------------------------------------------------------------

    def _policy_reply(self, command: Command, org: str) -> Reply:
        policies = self._resilience.policies
        reply = OrgPolicyReply(org=org, policy=policies.get(org) or OrgPolicy(),
                               effective=self._resilience.limiter.effective(org), updatedAt=policies.updated_at(org))
        return command.json_reply(200, reply.model_dump(exclude_none=True))

    async def policy_get(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        org = resolve_org(caller.principal, parse_query(OrgRef, command.body).org, None)  # members and admins
        return self._policy_reply(command, org)

    async def policy_put(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        require_admin(caller, "change an org's resilience policy")
        request = OrgPolicyWrite.model_validate_json(command.body)
        org = resolve_org(caller.principal, request.org, None)
        for operation, chain in request.body.fallbacks.items():
            for index, target in enumerate(chain):
                spec = self._providers.get(target.provider)
                if spec is None or operation not in spec.operations:
                    raise GatewayError(f"fallbacks.{operation}[{index}]: {target.provider} does not offer {operation}",
                                       ErrorCategory.validation, reason=Reason.INVALID_REQUEST)
        await self._resilience.policies.put(org, request.body)
        return self._policy_reply(command, org)

    async def policy_delete(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        require_admin(caller, "remove an org's resilience policy")
        org = resolve_org(caller.principal, parse_query(OrgRef, command.body).org, None)
        await self._resilience.policies.delete(org)
        return self._policy_reply(command, org)
