"""Builds the domain objects of one worker process from its settings, and closes them."""

import logging

from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.credentials import EnvCredentials
from service.execute import ExecuteService
from service.providers.capabilities import build_provider_table
from service.settings import Settings
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = build_provider_table(settings)
        self.transport = UpstreamTransport(settings.upstream_pool_size, settings.upstream_max_response_bytes)
        self.key_store = KeyStore(settings.key_store_path)
        self.authenticator = LocalAuthenticator(settings.configured_api_keys, self.key_store)
        self.credentials = EnvCredentials({
            "openai": settings.openai_api_key,
            "huggingface": settings.huggingface_api_key,
        })
        self.execute = ExecuteService(
            providers=self.providers,
            transport=self.transport,
            authenticator=self.authenticator,
            credentials=self.credentials,
            timeout_for=settings.timeout_for,
            default_org=settings.default_org,
        )

    async def close(self) -> None:
        await self.transport.close()
