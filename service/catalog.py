"""Provider configurations: from the Catalog service when CATALOG_SERVICE_URL is set, built-in
defaults otherwise (reference §1.1, §5.1).

`GET {CATALOG}/api/bootstrap` answers a list of resources; every resource whose key is
`integrations/ai/<provider>/config` contains the provider's config in its `metadata` (baseUrl,
defaultModel, authType, endpoints, rateLimits, ...). Unlike the original, the load has a
timeout, is repeated every INTEGRATIONS_CATALOG_REFRESH_S, and a failed refresh keeps the last
good configs (defaults until Catalog has answered once).

Configs describe providers to callers (/providers, /capabilities); they do not move traffic:
where requests go is the provider's base URL setting, and `supportedOperations` always comes
from the capability table (the original's two drifting lists, §5.4 [QUIRK]). Providers Catalog
describes that the gateway cannot run are not listed.

The integration resources of a bootstrap (`metadata.integrationType: "openapi"`) become
read-only registry built-ins (service/registry/catalog.py, a listener of every load that
counted). A bootstrap without provider configs does not count: neither its configs nor its
integrations are used.
"""

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from service.errors import GatewayError
from service.logs import mask_url
from service.providers.base import ProviderSpec, UpstreamCall
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations.catalog")

_CONFIG_PREFIX = "integrations/ai/"
_CONFIG_SUFFIX = "/config"


def default_config(spec: ProviderSpec) -> dict[str, Any]:
    return {"provider": spec.name, "baseUrl": spec.base_url, "authType": "none" if not spec.needs_credential
            else "bearer", "defaultModel": spec.default_model, "supportedOperations": list(spec.operations)}


def bootstrap_resources(payload: Any) -> list[dict[str, Any]]:
    """The resource list of a bootstrap answer (a bare list, or wrapped in `resources`/`data`)."""
    if isinstance(payload, dict):
        payload = payload.get("resources", payload.get("data"))
    return [r for r in payload if isinstance(r, dict)] if isinstance(payload, list) else []


def provider_configs_from(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {}
    for resource in resources:
        key = resource.get("key")
        metadata = resource.get("metadata")
        if (isinstance(key, str) and key.startswith(_CONFIG_PREFIX) and key.endswith(_CONFIG_SUFFIX)
                and isinstance(metadata, dict) and isinstance(metadata.get("provider"), str)):
            configs[metadata["provider"]] = metadata
    return configs


class ProviderConfigs:
    def __init__(self, table: Mapping[str, ProviderSpec], catalog_url: str | None, transport: UpstreamTransport,
                 *, timeout_s: float, refresh_s: float) -> None:
        self._table = table
        self._url = f"{catalog_url.rstrip('/')}/api/bootstrap" if catalog_url else None
        self._transport = transport
        self._timeout_s = timeout_s
        self._refresh_s = refresh_s
        self._catalog: dict[str, dict[str, Any]] = {}
        self.source = "defaults"          # defaults | catalog
        self.resources: list[dict[str, Any]] = []   # the last bootstrap (other resources: the registry's)
        # Called with the resources of every bootstrap that counted (Catalog integrations listen).
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._task: asyncio.Task | None = None

    # --- what callers see --------------------------------------------------------------------

    def get(self, provider: str) -> dict[str, Any] | None:
        """The config of a provider of the capability table, or None for any other name."""
        spec = self._table.get(provider)
        if spec is None:
            return None
        config = copy.deepcopy(self._catalog.get(provider)) or default_config(spec)
        config.setdefault("provider", provider)
        config["baseUrl"] = str(config.get("baseUrl") or spec.base_url)
        config["defaultModel"] = str(config.get("defaultModel") or spec.default_model)
        config["supportedOperations"] = list(spec.operations)
        return config

    def all(self) -> list[dict[str, Any]]:
        return [c for name in self._table if (c := self.get(name)) is not None]

    def configured(self, provider: str) -> bool:
        return provider in self._table

    # --- loading -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._url is None:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    async def refresh(self) -> bool:
        """One load from Catalog; True when it produced provider configs."""
        assert self._url is not None
        try:
            response = await self._transport.send("catalog", UpstreamCall("GET", self._url), self._timeout_s,
                                                   provider="catalog", operation="bootstrap")
        except GatewayError as exc:
            return self._failed(f"{exc.reason}")
        if response.status != 200:
            return self._failed(f"status {response.status}")
        resources = bootstrap_resources(response.payload)
        configs = provider_configs_from(resources)
        if not configs:
            return self._failed("no provider configs in the bootstrap")
        self._catalog, self.resources, self.source = configs, resources, "catalog"
        log.info("provider configs from catalog %s: %s", mask_url(self._url), ", ".join(configs))
        for listener in self.listeners:
            listener(resources)
        return True

    def _failed(self, why: str) -> bool:
        kept = "keeping the last configs from catalog" if self.source == "catalog" else "using built-in defaults"
        log.warning("could not load provider configs from catalog %s (%s); %s", mask_url(self._url or ""), why, kept)
        return False
