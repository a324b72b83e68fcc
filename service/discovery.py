"""Discovery handlers (contracts/discovery.py): providers, models, capabilities, status, stats.

Everything is computed over the one capability table, so a provider added there (Anthropic,
symbia-labs, ...) appears everywhere at once. Credential-aware answers (`/models`,
`/providers/{p}/models`, `/capabilities`) resolve the caller's org and credentials exactly as
`/execute` does; `/providers`, `/providers/{p}`, `/status` and `/api/stats` are open and never
touch credentials.

Two seams for later issues:
* `breakers`: the circuit breaker's view (`BreakerView.snapshot`); until it exists every
  circuit reads closed. An open or half-open circuit makes a provider `degraded`.
* `probes`: for providers that need no credential (`needs_credential=False`), an async
  reachability check by provider name; a provider without a probe counts as reachable.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from contracts.discovery import ModelsQuery, NoParams, ProviderModelsQuery, ProviderRef
from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Access, Caller
from service.catalog import ProviderConfigs
from service.commands import Command, Reply
from service.credentials import Credential, CredentialResolver
from service.errors import GatewayError
from service.providers.base import ProviderSpec
from service.providers.model_lists import ModelLists
from service.providers.models import ModelInfo

log = logging.getLogger("symbia.integrations.discovery")

Q = TypeVar("Q", bound=BaseModel)

# Purposes of GET /models?purpose= (reference §5.3); anything else filters nothing.
PURPOSES = {"chat": ("chat", "reasoning"), "llm": ("chat", "reasoning"), "embedding": ("embedding",),
            "embeddings": ("embedding",), "vision": ("vision",)}
# Sort order of modelsByPurpose (the original's; providers not listed come last, in table order).
PROVIDER_PRIORITY = ("openai", "anthropic", "google", "mistral", "cohere", "huggingface")
# The original's constant defaults [QUIRK kept: UIs preselect them; `status` says what is usable].
DEFAULTS = {"chatProvider": "openai", "chatModel": "gpt-4o-mini", "embeddingProvider": "openai",
            "embeddingModel": "text-embedding-3-small"}
STATUS_NOTE = ("registered = an adapter and config exist in this service. Credentials are per-user and live in "
               "identity; this route is unauthenticated and does not check them. Use GET "
               "/api/integrations/capabilities with a token for a credential-aware answer.")
_PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: str = "closed"               # closed | open | half_open
    failures: int = 0
    last_failure: str = "never"         # ISO time, or "never"
    retry_after_s: float | None = None


class BreakerView(Protocol):
    def snapshot(self, provider: str) -> BreakerSnapshot: ...


class ClosedBreakers:
    """Until the circuit breaker exists (issue 7): every circuit is closed."""

    def snapshot(self, provider: str) -> BreakerSnapshot:
        return BreakerSnapshot()


Probe = Callable[[], Awaitable[bool]]


async def no_integrations() -> int:
    return 0


def parse_query(model: type[Q], body: bytes) -> Q:
    """GET routes carry their path and query parameters as a JSON object; an empty body is `{}`."""
    return model.model_validate_json(body if body.strip() else b"{}")


def model_config(info: ModelInfo) -> dict[str, Any]:
    """The wire ModelConfig (reference §5.2): absent facts are omitted, not null."""
    out: dict[str, Any] = {"id": info.id, "name": info.name}
    if info.description:
        out["description"] = info.description
    if info.context_window is not None:
        out["contextWindow"] = info.context_window
    if info.max_output_tokens is not None:
        out["maxOutputTokens"] = info.max_output_tokens
    out["capabilities"] = list(info.capabilities)
    if info.input_price is not None:
        out["inputPricing"] = info.input_price
    if info.output_price is not None:
        out["outputPricing"] = info.output_price
    if info.deprecated:
        out["deprecated"] = True
    return out


def capability_filter(value: str | None) -> tuple[str, ...]:
    return tuple(c.strip().lower() for c in (value or "").split(",") if c.strip())


def matching(models: tuple[ModelInfo, ...], wanted: tuple[str, ...]) -> list[ModelInfo]:
    if not wanted:
        return list(models)
    return [m for m in models if any(c.lower() in wanted for c in m.capabilities)]


def _priority(provider: str) -> int:
    return PROVIDER_PRIORITY.index(provider) if provider in PROVIDER_PRIORITY else len(PROVIDER_PRIORITY)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DiscoveryService:
    request_id_prefix = "req"

    def __init__(self, *, providers: Mapping[str, ProviderSpec], configs: ProviderConfigs, access: Access,
                 credentials: CredentialResolver, model_lists: ModelLists, breakers: BreakerView | None = None,
                 probes: MutableMapping[str, Probe] | None = None,
                 integration_count: Callable[[], Awaitable[int]] = no_integrations) -> None:
        self._providers = providers
        self._configs = configs
        self._access = access
        self._credentials = credentials
        self._model_lists = model_lists
        self.breakers: BreakerView = breakers or ClosedBreakers()
        self.probes: MutableMapping[str, Probe] = probes if probes is not None else {}
        self.integration_count = integration_count

    # --- open routes -------------------------------------------------------------------------

    async def providers_list(self, command: Command) -> Reply:
        parse_query(NoParams, command.body)
        return command.json_reply(200, {"providers": [
            {"name": c["provider"], "baseUrl": c["baseUrl"], "defaultModel": c["defaultModel"],
             "supportedOperations": c["supportedOperations"]} for c in self._configs.all()]})

    async def provider_get(self, command: Command) -> Reply:
        query = parse_query(ProviderRef, command.body)
        config = self._configs.get(query.provider)
        if config is None:
            raise self._unknown(query.provider)
        return command.json_reply(200, config)

    async def status(self, command: Command) -> Reply:
        parse_query(NoParams, command.body)
        breakers = {name: self.breakers.snapshot(name) for name in self._providers}
        return command.json_reply(200, {
            "status": "degraded" if any(b.state != "closed" for b in breakers.values()) else "healthy",
            "providers": [{"name": name, "registered": True, "credential": "not_checked",
                           "configured": self._configs.configured(name)} for name in self._providers],
            "note": STATUS_NOTE,
            "circuitBreaker": {name: {"state": b.state, "failures": b.failures, "lastFailure": b.last_failure}
                               for name, b in breakers.items()},
        })

    async def stats(self, command: Command) -> Reply:
        parse_query(NoParams, command.body)
        return command.json_reply(200, {
            "totalProviders": len(self._providers),
            "configuredProviders": sum(1 for name in self._providers if self._configs.configured(name)),
            "totalIntegrations": await self.integration_count(),
        })

    # --- authenticated routes ----------------------------------------------------------------

    async def provider_models(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        query = parse_query(ProviderModelsQuery, command.body)
        spec = self._providers.get(query.provider)
        if spec is None:
            raise self._unknown(query.provider)
        models = await self._models(caller, spec)
        return command.json_reply(200, {"models": [model_config(m) for m in
                                                   matching(models, capability_filter(query.capability))]})

    async def models(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        query = parse_query(ModelsQuery, command.body)
        wanted = capability_filter(query.capability) or PURPOSES.get((query.purpose or "").strip().lower(), ())
        specs = list(self._providers.values())
        lists = await asyncio.gather(*(self._models(caller, spec) for spec in specs))
        by_provider: dict[str, list[dict[str, Any]]] = {}
        for spec, models in zip(specs, lists, strict=True):
            kept = [{**model_config(m), "provider": spec.name} for m in matching(models, wanted)]
            if kept:
                by_provider[spec.name] = kept
        return command.json_reply(200, {"models": by_provider,
                                        "all": [m for kept in by_provider.values() for m in kept]})

    async def capabilities(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        parse_query(NoParams, command.body)
        entries = await asyncio.gather(*(self._capability(caller, spec) for spec in self._providers.values()))
        purposes: dict[str, list[dict[str, Any]]] = {"chat": [], "embedding": [], "vision": [], "reasoning": []}
        for entry in entries:
            for model in entry["models"]:
                caps = model["capabilities"]
                for purpose, accepts in (("chat", ("chat", "reasoning")), ("embedding", ("embedding",)),
                                         ("vision", ("vision",)), ("reasoning", ("reasoning",))):
                    if any(c in caps for c in accepts):
                        purposes[purpose].append({"provider": entry["provider"], "model": model})
        for listed in purposes.values():
            listed.sort(key=lambda item: _priority(item["provider"]))   # stable: keeps model order
        return command.json_reply(200, {
            "providers": entries,
            "byProvider": {entry["provider"]: entry for entry in entries},
            "modelsByPurpose": purposes,
            "defaults": dict(DEFAULTS),
            "fetchedAt": _now(),
        })

    # --- shared steps ------------------------------------------------------------------------

    @staticmethod
    def _unknown(provider: str) -> GatewayError:
        return GatewayError(f"Provider not found: {provider}", ErrorCategory.not_found,
                            reason=Reason.UNKNOWN_PROVIDER, provider=provider)

    async def _credential(self, caller: Caller, spec: ProviderSpec) -> Credential | None:
        if not spec.needs_credential:
            return None
        found = await self._credentials.resolve(caller, spec.name, None)
        return found if found is not None and found.api_key else None

    async def _models(self, caller: Caller, spec: ProviderSpec) -> tuple[ModelInfo, ...]:
        credential = await self._credential(caller, spec)
        return await self._model_lists.models(spec, credential.api_key if credential else None)

    async def _capability(self, caller: Caller, spec: ProviderSpec) -> dict[str, Any]:
        credential = await self._credential(caller, spec)
        models, (status, message) = await asyncio.gather(
            self._model_lists.models(spec, credential.api_key if credential else None),
            self._status(spec, credential))
        config = self._configs.get(spec.name) or {}
        entry: dict[str, Any] = {
            "provider": spec.name,
            "name": spec.name[:1].upper() + spec.name[1:],
            "displayName": spec.display_name,
            "description": spec.description,
            "baseUrl": config.get("baseUrl", ""),
            "defaultModel": config.get("defaultModel", ""),
            "supportedOperations": list(spec.operations),
            "models": [model_config(m) for m in models],
            "access": {
                "hasCredential": credential is not None,
                "credentialSource": credential.source if credential else "none",
                "isEnabled": credential is not None or not spec.needs_credential,
                "lastUsedAt": None,
            },
        }
        if isinstance(config.get("rateLimits"), dict):
            entry["rateLimits"] = config["rateLimits"]
        entry["status"] = status
        if message:
            entry["statusMessage"] = message
        return entry

    async def _status(self, spec: ProviderSpec, credential: Credential | None) -> tuple[str, str | None]:
        if spec.needs_credential and credential is None:
            return "unavailable", "No API key configured"
        probe = self.probes.get(spec.name)
        if not spec.needs_credential and probe is not None and not await self._reachable(spec.name, probe):
            return "unavailable", f"{spec.display_name} is not reachable"
        breaker = self.breakers.snapshot(spec.name)
        if breaker.state == "open":
            after = f"; retry after {breaker.retry_after_s:.0f}s" if breaker.retry_after_s else ""
            return "degraded", f"Circuit open: too many recent failures{after}"
        if breaker.state == "half_open":
            return "degraded", "Recovering from recent failures (circuit half-open)"
        return "available", None

    @staticmethod
    async def _reachable(name: str, probe: Probe) -> bool:
        try:
            return bool(await asyncio.wait_for(probe(), _PROBE_TIMEOUT_S))
        except Exception as exc:  # a failing probe means "not reachable", never a failed request
            log.info("reachability probe of %s failed: %r", name, exc)
            return False
