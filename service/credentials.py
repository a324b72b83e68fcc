"""Provider credentials: callers never hold provider keys; the gateway resolves them.

Local mode reads them from the environment. The Identity service (personal and org-wide
credentials) plugs in behind the same `CredentialResolver` protocol.
"""

from dataclasses import dataclass, field
from typing import Protocol

from contracts.envelope import ErrorCategory, Reason
from service.auth.principal import Principal
from service.errors import GatewayError
from service.providers.base import ProviderSpec


@dataclass(frozen=True, slots=True)
class Credential:
    api_key: str | None = field(repr=False)
    source: str                     # personal | org-wide | service | env | none
    credential_id: str | None = None


NO_CREDENTIAL = Credential(api_key=None, source="none")


class CredentialResolver(Protocol):
    async def resolve(self, principal: Principal, org: str, provider: ProviderSpec,
                      credential_id: str | None, operation: str = "") -> Credential: ...


def credential_missing(provider: ProviderSpec, operation: str, where: str) -> GatewayError:
    return GatewayError(
        f"No {provider.name} API key configured. {where}",
        ErrorCategory.auth, status=400, reason=Reason.PROVIDER_CREDENTIAL_MISSING,
        provider=provider.name, operation=operation,
    )


class EnvCredentials:
    """One key per provider from the gateway's own environment."""

    def __init__(self, keys: dict[str, str | None]) -> None:
        self._keys = {name: Credential(api_key=key, source="env") for name, key in keys.items() if key}

    async def resolve(self, principal: Principal, org: str, provider: ProviderSpec,
                      credential_id: str | None, operation: str = "") -> Credential:
        if not provider.needs_credential:
            return NO_CREDENTIAL
        credential = self._keys.get(provider.name)
        if credential is None:
            raise credential_missing(provider, operation,
                                     f"Set {' or '.join(provider.credential_env)} in the gateway's environment.")
        return credential
