"""Local mode: callers present an API key (`X-API-Key` or `Authorization: Bearer`) that is
either listed in INTEGRATIONS_API_KEYS or was created with `symbia-integrations keys create`,
or, when INTEGRATIONS_JWT_SECRET / INTEGRATIONS_JWT_JWKS_URL is set, a signed JWT."""

from collections.abc import Mapping

from service.auth.jwt_tokens import JwtVerifier, looks_like_jwt
from service.auth.keys import KeyStore, hash_key
from service.auth.principal import ADMIN_ENTITLEMENTS, Principal, caller_key, unauthenticated


class LocalAuthenticator:
    def __init__(self, configured_keys: tuple[str, ...], store: KeyStore, jwt: JwtVerifier | None = None) -> None:
        # Operator-configured keys act in any org and are not admins.
        self._configured = {
            hash_key(key): Principal(id=f"config-key-{i + 1}", type="api_key", organizations=None,
                                     name=f"INTEGRATIONS_API_KEYS[{i}]")
            for i, key in enumerate(configured_keys)
        }
        self._store = store
        self._jwt = jwt

    def key_principal(self, key: str) -> Principal | None:
        """The principal of a local API key, or None (no I/O: a dict lookup)."""
        key_hash = hash_key(key)
        principal = self._configured.get(key_hash)
        if principal is not None:
            return principal
        record = self._store.find(key_hash)
        if record is None:
            return None
        return Principal(
            id=f"key:{record.id}",
            type="api_key",
            organizations=(record.org,) if record.org else None,
            entitlements=ADMIN_ENTITLEMENTS if record.admin else frozenset(),
            default_org=record.org,
            name=record.name,
        )

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        key = caller_key(headers)
        if not key:
            raise unauthenticated()
        principal = self.key_principal(key)
        if principal is None and self._jwt is not None and looks_like_jwt(key):
            principal = await self._jwt.verify(key)
        if principal is None:
            raise unauthenticated()
        return principal
