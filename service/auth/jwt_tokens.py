"""Local mode's optional JWT callers: HS256 with INTEGRATIONS_JWT_SECRET, RS256/ES256 with the
keys at INTEGRATIONS_JWT_JWKS_URL (fetched without blocking the loop, kept for
INTEGRATIONS_JWT_JWKS_TTL_S, refetched early when a token names an unknown `kid`).

Claims: `sub` and `exp` are required; `type` (user | agent, default user), `agentId`;
organizations from `org` / `orgId` (one id) and `organizations` (ids or `{id}` objects), else the
default org; entitlements from `entitlements`, `capabilities` and `scope` (space-separated).
An algorithm is only accepted with its own kind of key, so an HS256 token can never be checked
against a public key (algorithm confusion).
"""

import logging
import time
from typing import Any

import jwt

from contracts.envelope import ErrorCategory, Reason
from service.auth.principal import Principal
from service.errors import GatewayError
from service.providers.base import UpstreamCall
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations.auth")

_ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
_REFETCH_UNKNOWN_KID_S = 30.0


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("ey")


class JwtVerifier:
    def __init__(self, *, secret: str | None, jwks_url: str | None, audience: str | None, issuer: str | None,
                 leeway_s: float, default_org: str, transport: UpstreamTransport, timeout_s: float,
                 jwks_ttl_s: float = 300.0) -> None:
        self._secret = secret
        self._jwks_url = jwks_url
        self._audience = audience
        self._issuer = issuer
        self._leeway_s = leeway_s
        self._default_org = default_org
        self._transport = transport
        self._timeout_s = timeout_s
        self._jwks_ttl_s = jwks_ttl_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    async def verify(self, token: str) -> Principal | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        alg = header.get("alg")
        if alg == "HS256" and self._secret:
            key: Any = self._secret
        elif alg in _ASYMMETRIC and self._jwks_url:
            found = await self._signing_key(header.get("kid"))
            if found is None:
                return None
            key = found.key
        else:
            return None
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self._audience, issuer=self._issuer, leeway=self._leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            log.info("rejected a JWT: %s", type(exc).__name__)  # never the token itself
            return None
        return self._principal(claims, token)

    def _principal(self, claims: dict[str, Any], token: str) -> Principal:
        orgs: list[str] = []
        for name in ("org", "orgId"):
            if isinstance(claims.get(name), str) and claims[name]:
                orgs.append(claims[name])
        for item in claims.get("organizations") or []:
            org = item.get("id") if isinstance(item, dict) else item
            if isinstance(org, str) and org and org not in orgs:
                orgs.append(org)
        entitlements = {e for name in ("entitlements", "capabilities") for e in (claims.get(name) or [])
                        if isinstance(e, str)}
        if isinstance(claims.get("scope"), str):
            entitlements.update(claims["scope"].split())
        kind = "agent" if claims.get("type") == "agent" else "user"
        return Principal(
            id=str(claims.get("agentId") or claims["sub"]) if kind == "agent" else str(claims["sub"]),
            type=kind,
            organizations=tuple(orgs) or (self._default_org,),
            entitlements=frozenset(entitlements),
            default_org=orgs[0] if orgs else self._default_org,
            name=claims.get("name") or claims.get("email"),
            token=token,
        )

    async def _signing_key(self, kid: str | None) -> jwt.PyJWK | None:
        age = time.monotonic() - self._fetched_at
        if age > self._jwks_ttl_s or (kid not in self._keys and age > _REFETCH_UNKNOWN_KID_S):
            await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        assert self._jwks_url
        try:
            response = await self._transport.send("jwks", UpstreamCall("GET", self._jwks_url), self._timeout_s,
                                                   provider="jwks", operation="keys")
            if response.status != 200 or not isinstance(response.payload, dict):
                raise ValueError(f"status {response.status}")
            key_set = jwt.PyJWKSet.from_dict(response.payload)
        except (GatewayError, ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
            if self._keys:  # keep serving with the keys we have
                log.warning("could not refresh the JWKS (%s); keeping %d known keys", exc, len(self._keys))
                self._fetched_at = time.monotonic()
                return
            raise GatewayError("Cannot verify tokens: the signing keys are unavailable", ErrorCategory.network,
                               status=503, retryable=True, reason=Reason.IDENTITY_UNAVAILABLE) from None
        self._keys = {k.key_id: k for k in key_set.keys}
        self._fetched_at = time.monotonic()
