"""Provider credentials: callers never hold provider keys; the gateway resolves them.

Local mode reads them from the environment. The Identity service (personal and org-wide
credentials) plugs in behind the same `CredentialResolver` protocol. A resolver answers
"which key does this caller use for this provider (or integration key)", or None; the
pipeline decides whether a missing key is an error.
"""

from dataclasses import dataclass, field
from typing import Protocol

from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Caller
from service.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Credential:
    api_key: str | None = field(repr=False)
    source: str                     # personal | org-wide | service | env | none
    credential_id: str | None = None


NO_CREDENTIAL = Credential(api_key=None, source="none")


class CredentialResolver(Protocol):
    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None: ...

    def where_to_add(self, provider: str) -> str:
        """Tells a user where the missing key for `provider` belongs."""
        ...


def credential_missing(resolver: CredentialResolver, provider: str, operation: str | None) -> GatewayError:
    return GatewayError(
        f"No {provider} API key configured. {resolver.where_to_add(provider)}",
        ErrorCategory.auth, status=400, reason=Reason.PROVIDER_CREDENTIAL_MISSING,
        provider=provider, operation=operation,
    )


class EnvCredentials:
    """One key per provider from the gateway's own environment (local mode)."""

    def __init__(self, keys: dict[str, str | None], env_names: dict[str, tuple[str, ...]]) -> None:
        self._keys = {name: Credential(api_key=key, source="env") for name, key in keys.items() if key}
        self._env_names = env_names

    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None:
        return self._keys.get(provider)

    def where_to_add(self, provider: str) -> str:
        names = self._env_names.get(provider)
        if names:
            return f"Set {' or '.join(names)} in the gateway's environment."
        return "Configure a key for it in the gateway's environment."
