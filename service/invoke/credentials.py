"""Credentials of registered integrations, resolved per call, never stored in the registry.

Local mode (INTEGRATIONS_CREDENTIALS) is scoped so that a secret meant for one integration
cannot be captured by registering the same key elsewhere: `"<org>/<key>"` serves the entry
`<key>` of org `<org>` only; a bare `"<key>"` serves only the *global* entry `<key>` (which an
admin registered, and which no org can shadow). Otherwise the platform's resolver (the
Identity service, which already scopes credentials by caller and org) answers for the key.
"""

from service.auth.access import Caller
from service.credentials import Credential, CredentialResolver
from service.registry.model import Entry


class IntegrationCredentials:
    def __init__(self, local: dict[str, str], resolver: CredentialResolver) -> None:
        self._local = dict(local)
        self._resolver = resolver

    @staticmethod
    def local_name(entry: Entry) -> str:
        return entry.key if entry.org is None else f"{entry.org}/{entry.key}"

    async def resolve(self, caller: Caller, entry: Entry, credential_id: str | None) -> Credential | None:
        secret = self._local.get(self.local_name(entry))
        if secret:
            return Credential(api_key=secret, source="env")
        return await self._resolver.resolve(caller, entry.key, credential_id)

    def where_to_add(self, entry: Entry) -> str:
        return (f"Configure it for '{entry.key}' in the credential store, or locally as "
                f"INTEGRATIONS_CREDENTIALS[\"{self.local_name(entry)}\"].")
