"""Builds the domain objects of one worker process from its settings, and closes them."""

import logging

from contracts.execute import ExecuteRequest
from contracts.invoke import InvokeRequest
from contracts.registry import RegisterRequest
from service.auth.keys import KeyStore
from service.cache import TTLCache
from service.catalog import ProviderConfigs
from service.discovery import DiscoveryService
from service.execute import ExecuteService
from service.invoke.credentials import IntegrationCredentials
from service.invoke.service import InvokeService
from service.jobs.grants import JobSigner, load_signing_key
from service.jobs.kinds import JobHandler
from service.jobs.service import JobsService
from service.mcp.client import McpPool
from service.mcp.endpoint import McpEndpointService
from service.mcp.toolset import ToolCatalog
from service.openai_compat import OpenAICompatService
from service.outbound import OutboundGuard
from service.providers.base import ProviderSpec
from service.providers.capabilities import build_provider_table
from service.providers.discovery import ProviderProbe
from service.providers.model_lists import ModelLists
from service.registry.catalog import CatalogIntegrations
from service.registry.discovery import Discovery
from service.registry.internal import InternalServices
from service.registry.registry import Registry
from service.registry.service import RegistryService
from service.registry.store import RegistryStore
from service.resilience.core import Resilience
from service.resilience.service import ResilienceService
from service.settings import Settings
from service.tenancy import build_tenancy
from service.transport import UpstreamTransport
from service.usage.pipeline import UsagePipeline
from service.usage.queries import UsageQueries

log = logging.getLogger("symbia.integrations")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = build_provider_table(settings)
        self.transport = UpstreamTransport(settings.upstream_pool_size, settings.upstream_max_response_bytes,
                                           OutboundGuard(settings.outbound_allow_list))
        self.key_store = KeyStore(settings.key_store_path)
        # Who may call, in which org, with which provider keys (local or Identity mode).
        self.tenancy = build_tenancy(settings, self.providers, self.transport, self.key_store)
        self.access = self.tenancy.access
        self.credentials = self.tenancy.credentials
        # Liveness of keyless providers and live model lists (symbia-labs): for /capabilities.
        self.provider_probe = ProviderProbe(self.transport)
        # Called with each authenticated command and its reply (the usage pipeline plugs in here).
        self.observers: list = []
        # Circuit breakers, rate limits, retries, fallbacks, deadlines (docs/RESILIENCE.md).
        self.resilience = Resilience(settings)
        self.execute = ExecuteService(
            providers=self.providers,
            transport=self.transport,
            access=self.access,
            credentials=self.credentials,
            timeout_for=settings.timeout_for,
            resilience=self.resilience,
        )
        self.openai = OpenAICompatService(self.execute, self.access, settings.openai_default_provider)
        self.provider_configs = ProviderConfigs(self.providers, settings.catalog_service_url, self.transport,
                                                timeout_s=settings.catalog_timeout_s,
                                                refresh_s=settings.catalog_refresh_s)
        self.model_lists = ModelLists(self.transport, TTLCache(settings.cache_max_entries),
                                      ttl_s=settings.model_list_ttl_s, timeout_s=settings.model_list_timeout_s)
        # Seams: the circuit breaker sets `discovery.breakers`, the registry `discovery.integration_count`,
        # credential-less providers register reachability probes in `discovery.probes`.
        self.discovery = DiscoveryService(
            providers=self.providers,
            configs=self.provider_configs,
            access=self.access,
            credentials=self.credentials,
            model_lists=self.model_lists,
        )
        self.discovery.breakers = self.resilience.breakers
        for spec in self.providers.values():
            if not spec.needs_credential and spec.health_url:
                self.discovery.probes[spec.name] = self._reachability(spec)

        # --- registry and invoke (docs/REGISTRY.md) -------------------------------------------
        self.mcp = McpPool(self.transport.guard, settings.mcp_timeout_s, settings.mcp_idle_s,
                           settings.mcp_stdio_allow_list)
        self.registry_store = RegistryStore()
        self.registry = Registry(self.registry_store, self.providers, frozenset(settings.internal_services))
        self.registry_store.listeners.append(lambda key, _entry: self.mcp.invalidate(key))
        integration_credentials = IntegrationCredentials(settings.integration_credentials, self.credentials)
        discovery = Discovery(self.transport, self.mcp, settings)
        self.internal_services = InternalServices(settings.internal_services, self.registry_store, discovery)
        self.catalog_integrations = CatalogIntegrations(self.registry_store, discovery, self.registry.builtin_key)
        self.provider_configs.listeners.append(self.catalog_integrations.update)
        self.registry_service = RegistryService(access=self.access, registry=self.registry, discovery=discovery,
                                                credentials=integration_credentials,
                                                syncs={"internal": self.internal_services,
                                                       "catalog": self.catalog_integrations})
        self.invoke = InvokeService(access=self.access, registry=self.registry, execute=self.execute,
                                    transport=self.transport, mcp=self.mcp, credentials=integration_credentials,
                                    settings=settings, resilience=self.resilience)
        self.resilience_service = ResilienceService(access=self.access, resilience=self.resilience,
                                                    providers=self.providers)

        self.discovery.integration_count = self._integration_count

        # --- the gateway's own MCP endpoint (docs/MCP.md): tools from the registry, calls through invoke
        self.mcp_tools = ToolCatalog(self.registry, self.providers, self.credentials)
        self.mcp_endpoint = McpEndpointService(access=self.access, tools=self.mcp_tools, invoke=self.invoke,
                                               page_size=settings.mcp_page_size)

        # Commands that can run as jobs (docs/JOBS.md): kind → its request-reply twin, the very
        # handler its request-reply subject runs (the job's caller comes from its grant).
        self.job_handlers: dict[str, JobHandler] = {
            "execute": JobHandler(self.execute, self.execute.request_id_prefix, ExecuteRequest),
            "invoke": JobHandler(self.invoke, self.invoke.request_id_prefix, InvokeRequest),
            "register": JobHandler(self.registry_service.register, self.registry_service.request_id_prefix,
                                   RegisterRequest),
        }
        self.jobs = JobsService(access=self.access, handlers=self.job_handlers,
                                grant_ttl_s=settings.job_grant_ttl_s, batch_max=settings.job_batch_max,
                                max_age_s=settings.job_max_age_s)
        self.job_signer: JobSigner | None = None       # loaded at load() (it may create the key file)

        # --- usage events of every authenticated call, the usage store and its queries (docs/USAGE.md)
        self.usage = UsagePipeline(settings)
        self.observers.append(self.usage.observe)
        self.usage_queries = UsageQueries(self.access, self.usage, settings.data_dir / "exports")

    async def _integration_count(self) -> int:
        return len(self.registry_store.entries())

    def _reachability(self, spec: ProviderSpec):
        async def probe() -> bool:
            return await self.provider_probe.available(spec) is not False
        return probe

    async def load(self) -> None:
        """Start-up I/O before the worker connects: the first Catalog load, the job signing key."""
        await self.provider_configs.start()
        self.job_signer = JobSigner(load_signing_key(self.settings.job_signing_key,
                                                     self.settings.job_signing_key_path))

    async def start(self, nc) -> None:
        """Once the worker is connected: state that lives in NATS (the registry; breaker states,
        rate-limit buckets and org policies; the usage stream)."""
        await self.registry_store.start(nc, self.settings.js_replicas)
        self.internal_services.start()
        self.catalog_integrations.start()
        await self.resilience.start(nc)
        await self.usage.start()
        self.usage.publish_on(nc)  # events travel on the request connection, ahead of their replies

    async def close(self) -> None:
        await self.usage.close()  # after the subscribers stopped: flush events, finish the batch in hand
        await self.resilience.close()
        await self.provider_configs.stop()
        await self.internal_services.close()
        await self.catalog_integrations.close()
        await self.mcp.close()
        await self.registry_store.close()
        await self.transport.close()

