"""Identity mode: callers are users, agents and API keys of the Symbia Identity service.

Methods, tried in the original's order (reference §2.3; symbia-auth):
  1. `Authorization: Bearer <jwt>` → `POST /api/auth/introspect`
  2. `X-API-Key` → `POST /api/auth/verify-api-key`
  3. cookie `token`, then `symbia_session` → introspect the value, else `GET /api/users/me` with it
An answer that is not active falls through to the next method; none left → 401.

Answers are cached by a hash of the presented secret, positive ones for
INTEGRATIONS_AUTH_CACHE_TTL_S (never past the token's own `exp`), negative ones for
INTEGRATIONS_AUTH_NEGATIVE_CACHE_TTL_S: a revoked token keeps working for at most the positive
TTL (docs/IDENTITY.md). Identity down → 503 `identity_unavailable`, within INTEGRATIONS_IDENTITY_TIMEOUT_S.
"""

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from contracts import headers as h
from service.auth.local import LocalAuthenticator
from service.auth.principal import Principal, caller_key, unauthenticated
from service.cache import Loaded, TTLCache, fingerprint
from service.identity.client import IdentityClient

SESSION_COOKIES = ("token", "symbia_session")


def parse_cookies(header: str) -> dict[str, str]:
    """`a=1; b=2` → {"a": "1", "b": "2"}; tolerant of junk (SimpleCookie rejects whole headers)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def _strings(values: Any) -> frozenset[str]:
    return frozenset(v for v in values or () if isinstance(v, str))


def principal_from_introspection(data: dict[str, Any], token: str | None) -> Principal | None:
    """symbia-auth's parseIntrospectionResponse: agents are identified by agentId and carry
    their org in the token; users by `sub`, with their memberships."""
    if not data.get("active"):
        return None
    if data.get("type") == "agent":
        org = data.get("orgId") or None
        return Principal(
            id=str(data.get("agentId") or data.get("sub") or ""),
            type="agent",
            organizations=(org,) if org else (),
            entitlements=_strings(data.get("capabilities")),
            default_org=org,
            name=data.get("name"),
            token=token,
        )
    orgs = tuple(str(o["id"]) for o in data.get("organizations") or () if isinstance(o, dict) and o.get("id"))
    return Principal(
        id=str(data.get("sub") or ""),
        type="user",
        organizations=orgs,
        entitlements=_strings(data.get("entitlements")),
        default_org=orgs[0] if orgs else None,
        name=data.get("name") or data.get("email"),
        token=token,
        super_admin=bool(data.get("isSuperAdmin")),
    )


def principal_from_api_key(data: dict[str, Any]) -> Principal | None:
    """symbia-auth's parseApiKeyResponse. Such a principal has no token to forward to Identity;
    its credential lookups use INTEGRATIONS_SERVICE_TOKEN."""
    if not data.get("valid"):
        return None
    org = data.get("orgId") or None
    creator = data.get("creator") or {}
    return Principal(
        id=str(creator.get("id") or f"api:{data.get('keyId')}"),
        type="api_key",
        organizations=(org,) if org else (),
        entitlements=_strings(creator.get("entitlements") or data.get("scopes")),
        default_org=org,
        name=data.get("name"),
    )


def principal_from_user(data: dict[str, Any]) -> Principal | None:
    if not data.get("id"):
        return None
    orgs = tuple(str(o["id"]) for o in data.get("organizations") or () if isinstance(o, dict) and o.get("id"))
    return Principal(id=str(data["id"]), type="user", organizations=orgs,
                     entitlements=_strings(data.get("entitlements")), default_org=orgs[0] if orgs else None,
                     name=data.get("name") or data.get("email"), super_admin=bool(data.get("isSuperAdmin")))


class IdentityAuthenticator:
    def __init__(self, client: IdentityClient, cache: TTLCache[Principal | None], *, positive_ttl_s: float,
                 negative_ttl_s: float, local: LocalAuthenticator | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._cache = cache
        self._positive_ttl_s = positive_ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._local = local          # operator keys (INTEGRATIONS_API_KEYS, `keys create`) still work
        self._clock = clock

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if self._local is not None:
            key = caller_key(headers)
            principal = self._local.key_principal(key) if key else None
            if principal is not None:
                return principal
        auth = headers.get(h.AUTHORIZATION, "")
        scheme, _, bearer = auth.partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            token = bearer.strip()
            principal = await self._cached(("bearer", fingerprint(token)), lambda: self._introspect(token, token))
            if principal is not None:
                return principal
        api_key = (headers.get(h.API_KEY) or "").strip()
        if api_key:
            principal = await self._cached(("api_key", fingerprint(api_key)), lambda: self._verify_key(api_key))
            if principal is not None:
                return principal
        cookies = parse_cookies(headers.get(h.COOKIE, ""))
        for name in SESSION_COOKIES:
            value = cookies.get(name)
            if value:
                principal = await self._cached(("cookie", name, fingerprint(value)),
                                               lambda n=name, v=value: self._session(n, v))
                if principal is not None:
                    return principal
        raise unauthenticated()

    async def _cached(self, key: tuple, load: Callable[[], Awaitable[Loaded[Principal | None]]]) -> Principal | None:
        return await self._cache.get_or_load(key, load)

    def _ttl(self, principal: Principal | None, expires_at: Any = None) -> float:
        if principal is None:
            return self._negative_ttl_s
        ttl = self._positive_ttl_s
        if isinstance(expires_at, int | float):
            ttl = min(ttl, float(expires_at) - self._clock())   # never serve a token past its exp
        return ttl

    async def _introspect(self, token: str, forwardable: str | None) -> Loaded[Principal | None]:
        data = await self._client.introspect(token)
        principal = principal_from_introspection(data, forwardable) if data else None
        return principal, self._ttl(principal, (data or {}).get("exp"))

    async def _verify_key(self, api_key: str) -> Loaded[Principal | None]:
        data = await self._client.verify_api_key(api_key)
        principal = principal_from_api_key(data) if data else None
        return principal, self._ttl(principal)

    async def _session(self, name: str, value: str) -> Loaded[Principal | None]:
        # A cookie usually holds the JWT itself (forwardable to Identity like a bearer) ...
        principal, ttl = await self._introspect(value, value)
        if principal is not None:
            return principal, ttl
        # ... else it is a server-side session that only Identity can resolve.
        data = await self._client.current_user(name, value)
        principal = principal_from_user(data) if data else None
        return principal, self._ttl(principal)
