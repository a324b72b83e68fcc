"""Local mode: callers present an API key (`X-API-Key` or `Authorization: Bearer`) that is
either listed in INTEGRATIONS_API_KEYS or was created with `symbia-integrations keys create`."""

from collections.abc import Mapping

from service.auth.keys import KeyStore, hash_key
from service.auth.principal import ADMIN_ENTITLEMENTS, Principal, caller_key, unauthenticated


class LocalAuthenticator:
    def __init__(self, configured_keys: tuple[str, ...], store: KeyStore) -> None:
        # Operator-configured keys act in any org and are not admins.
        self._configured = {
            hash_key(key): Principal(id=f"config-key-{i + 1}", type="api_key", organizations=None,
                                     name=f"INTEGRATIONS_API_KEYS[{i}]")
            for i, key in enumerate(configured_keys)
        }
        self._store = store

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        key = caller_key(headers)
        if not key:
            raise unauthenticated()
        key_hash = hash_key(key)
        principal = self._configured.get(key_hash)
        if principal is not None:
            return principal
        record = self._store.find(key_hash)
        if record is None:
            raise unauthenticated()
        return Principal(
            id=f"key:{record.id}",
            type="api_key",
            organizations=(record.org,) if record.org else None,
            entitlements=ADMIN_ENTITLEMENTS if record.admin else frozenset(),
            default_org=record.org,
            name=record.name,
        )
