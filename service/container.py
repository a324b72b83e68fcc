"""Builds the domain objects of one worker process from its settings, and closes them."""

import logging

from service.auth.access import Access
from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.credentials import EnvCredentials
from service.execute import ExecuteService
from service.providers.base import ProviderSpec
from service.providers.capabilities import build_provider_table
from service.providers.discovery import ProviderProbe
from service.settings import Settings
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = build_provider_table(settings)
        self.transport = UpstreamTransport(settings.upstream_pool_size, settings.upstream_max_response_bytes)
        self.key_store = KeyStore(settings.key_store_path)
        self.access = Access(LocalAuthenticator(settings.configured_api_keys, self.key_store), settings.default_org)
        self.credentials = EnvCredentials(
            env_provider_keys(settings, self.providers),
            {name: spec.credential_env for name, spec in self.providers.items()},
        )
        # Liveness of keyless providers and live model lists (symbia-labs): for /capabilities.
        self.provider_probe = ProviderProbe(self.transport)
        # Called with each authenticated command and its reply (the usage pipeline plugs in here).
        self.observers: list = []
        self.execute = ExecuteService(
            providers=self.providers,
            transport=self.transport,
            access=self.access,
            credentials=self.credentials,
            timeout_for=settings.timeout_for,
        )

    async def close(self) -> None:
        await self.transport.close()


def env_provider_keys(settings: Settings, providers: dict[str, ProviderSpec]) -> dict[str, str | None]:
    """Local mode: each provider's key from its settings field (built-ins) or from the first set
    variable of its credential_env (configured providers), keyed as the resolver is asked."""
    from_settings = {"openai": settings.openai_api_key, "huggingface": settings.huggingface_api_key,
                     "anthropic": settings.anthropic_api_key}
    keys: dict[str, str | None] = {}
    for name, spec in providers.items():
        if not spec.needs_credential:
            continue
        if spec.source == "builtin":
            key = from_settings.get(name)
        else:
            key = next((v for v in map(settings.env, spec.credential_env) if v), None)
        if key or spec.identity_key not in keys:
            keys[spec.identity_key] = key
    return keys
