"""Builds the domain objects of one worker process from its settings, and closes them."""

import logging

from service.auth.access import Access
from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.credentials import EnvCredentials
from service.execute import ExecuteService
from service.invoke.credentials import IntegrationCredentials
from service.invoke.service import InvokeService
from service.mcp.client import McpPool
from service.outbound import OutboundGuard
from service.providers.capabilities import build_provider_table
from service.registry.discovery import Discovery
from service.registry.internal import InternalServices
from service.registry.registry import Registry
from service.registry.service import RegistryService
from service.registry.store import RegistryStore
from service.settings import Settings
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = build_provider_table(settings)
        self.transport = UpstreamTransport(settings.upstream_pool_size, settings.upstream_max_response_bytes,
                                           OutboundGuard(settings.outbound_allow_list))
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
        # --- registry and invoke (docs/REGISTRY.md) -------------------------------------------
        self.mcp = McpPool(self.transport.guard, settings.mcp_timeout_s, settings.mcp_idle_s,
                           settings.mcp_stdio_allow_list)
        self.registry_store = RegistryStore()
        self.registry = Registry(self.registry_store, self.providers, frozenset(settings.internal_services))
        self.registry_store.listeners.append(lambda key, _entry: self.mcp.invalidate(key))
        integration_credentials = IntegrationCredentials(settings.integration_credentials, self.credentials)
        discovery = Discovery(self.transport, self.mcp, settings)
        self.internal_services = InternalServices(settings.internal_services, self.registry_store, discovery)
        self.registry_service = RegistryService(access=self.access, registry=self.registry, discovery=discovery,
                                                credentials=integration_credentials, internal=self.internal_services)
        self.invoke = InvokeService(access=self.access, registry=self.registry, execute=self.execute,
                                    transport=self.transport, mcp=self.mcp, credentials=integration_credentials,
                                    settings=settings)

    async def start(self, nc) -> None:
        """Once the worker is connected: state that lives in NATS (the registry)."""
        await self.registry_store.start(nc)
        self.internal_services.start()

    async def close(self) -> None:
        await self.internal_services.close()
        await self.mcp.close()
        await self.registry_store.close()
        await self.transport.close()
