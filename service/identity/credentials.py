"""Provider keys stored in the Identity service (reference §4), for Identity mode.

Lookup: `GET /api/internal/credentials/{principalId}/{provider}` with the caller's own token,
`X-Service-Id: integrations` and the resolved `X-Org-Id`; Identity answers the caller's personal
key, else its org's org-wide key. Callers without a token Identity accepts (API-key principals,
server-side sessions) are looked up with the gateway's INTEGRATIONS_SERVICE_TOKEN instead of
failing as in the original.

A named credential (`credentialId`): `GET /api/internal/credentials/by-id/{id}`, then the gateway
checks that it is the caller's own, or org-wide in the caller's resolved org; otherwise 403.

Answers are cached per (principal, org, provider, credentialId) for
INTEGRATIONS_CREDENTIAL_CACHE_TTL_S (misses for INTEGRATIONS_CREDENTIAL_NEGATIVE_CACHE_TTL_S).
"""

import logging
from typing import Any

from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Caller
from service.cache import TTLCache
from service.credentials import Credential, credential_forbidden
from service.errors import GatewayError
from service.identity.client import IdentityClient

log = logging.getLogger("symbia.integrations.credentials")

# Ids of the gateway's own credentials (FileCredentials, EnvCredentials): not Identity's.
_LOCAL_ID_PREFIXES = ("env:", "file:")


class _Forbidden:
    """Cached outcome: the named credential exists for someone else (or not at all)."""


FORBIDDEN = _Forbidden()
CachedCredential = Credential | _Forbidden | None


class IdentityCredentials:
    def __init__(self, client: IdentityClient, cache: TTLCache[CachedCredential], *, service_token: str | None,
                 positive_ttl_s: float, negative_ttl_s: float) -> None:
        self._client = client
        self._cache = cache
        self._service_token = service_token
        self._positive_ttl_s = positive_ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._warned_no_token = False

    def where_to_add(self, provider: str) -> str:
        return ("Add your API key in Settings, or ask an admin of your organization to add an org-wide key "
                "(Identity credentials).")

    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None:
        if credential_id is not None and credential_id.startswith(_LOCAL_ID_PREFIXES):
            return None
        bearer = caller.principal.token or self._service_token
        if not bearer:
            if not self._warned_no_token:
                log.warning("a %s caller has no token to forward and INTEGRATIONS_SERVICE_TOKEN is not set: its "
                            "provider credentials cannot be looked up in Identity", caller.principal.type)
                self._warned_no_token = True
            return None
        key = (caller.principal.id, caller.org, provider, credential_id)
        found = await self._cache.get_or_load(key, lambda: self._load(caller, provider, credential_id, bearer))
        if isinstance(found, _Forbidden):
            raise credential_forbidden(credential_id or "", caller, provider)
        return found

    async def _load(self, caller: Caller, provider: str, credential_id: str | None,
                    bearer: str) -> tuple[CachedCredential, float]:
        via_service = bearer != caller.principal.token
        if credential_id is None:
            data = await self._client.credential(caller.principal.id, provider, bearer, caller.org)
            found = self._credential(data, caller, via_service) if data else None
        else:
            data = await self._client.credential_by_id(credential_id, bearer, caller.org)
            found = self._named(data, caller, provider, credential_id, via_service) if data else FORBIDDEN
        return found, self._positive_ttl_s if isinstance(found, Credential) else self._negative_ttl_s

    def _credential(self, data: dict[str, Any], caller: Caller, via_service: bool) -> Credential | None:
        api_key = data.get("apiKey")
        if not isinstance(api_key, str) or not api_key:
            return None
        owner = data.get("ownerId")
        org_wide = bool(data.get("isProxy")) or (bool(data.get("isOrgWide")) and owner != caller.principal.id)
        if org_wide and data.get("orgId") not in (None, caller.org):
            # Defence in depth: Identity picks org-wide keys by the X-Org-Id we send (the resolved org).
            log.warning("identity returned an org-wide credential of another org; ignored")
            return None
        if org_wide:
            source = "org-wide"
        elif via_service and owner not in (None, caller.principal.id):
            source = "service"
        else:
            source = "personal"
        credential_id = data.get("credentialId") or data.get("id")
        return Credential(api_key=api_key, source=source, credential_id=str(credential_id) if credential_id else None)

    def _named(self, data: dict[str, Any], caller: Caller, provider: str, credential_id: str,
               via_service: bool) -> Credential | _Forbidden:
        owner = data.get("ownerId") or data.get("userId")
        mine = owner is not None and owner == caller.principal.id
        org_shared = bool(data.get("isOrgWide")) and data.get("orgId") == caller.org
        if not (mine or org_shared):
            return FORBIDDEN
        kind = data.get("provider")
        if kind and kind != provider:
            raise GatewayError(f"Credential {credential_id} is a {kind} credential, not {provider}",
                               ErrorCategory.validation, reason=Reason.INVALID_REQUEST, provider=provider)
        found = self._credential({**data, "isProxy": not mine, "credentialId": credential_id}, caller, via_service)
        return found if found is not None else FORBIDDEN
