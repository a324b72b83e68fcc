"""Builds the domain objects of one worker process from its settings, and closes them."""

import logging

from service.auth.access import Access
from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.credentials import EnvCredentials
from service.execute import ExecuteService
from service.providers.capabilities import build_provider_table
from service.settings import Settings
from service.transport import UpstreamTransport
from service.usage.pipeline import UsagePipeline
from service.usage.queries import UsageQueries

log = logging.getLogger("symbia.integrations")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = build_provider_table(settings)
        self.transport = UpstreamTransport(settings.upstream_pool_size, settings.upstream_max_response_bytes)
        self.key_store = KeyStore(settings.key_store_path)
        self.access = Access(LocalAuthenticator(settings.configured_api_keys, self.key_store), settings.default_org)
        self.credentials = EnvCredentials(
            {"openai": settings.openai_api_key, "huggingface": settings.huggingface_api_key},
            {name: spec.credential_env for name, spec in self.providers.items()},
        )
        # Called with each authenticated command and its reply (the usage pipeline plugs in here).
        self.observers: list = []
        self.execute = ExecuteService(
            providers=self.providers,
            transport=self.transport,
            access=self.access,
            credentials=self.credentials,
            timeout_for=settings.timeout_for,
        )
        # Usage events of every authenticated call, the usage store and its queries (docs/USAGE.md).
        self.usage = UsagePipeline(settings)
        self.observers.append(self.usage.observe)
        self.usage_queries = UsageQueries(self.access, self.usage, settings.data_dir / "exports")

    async def start(self) -> None:
        """Before the subscribers take requests (needs the bus)."""
        await self.usage.start()

    async def close(self) -> None:
        await self.usage.close()
        await self.transport.close()
