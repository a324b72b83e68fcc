"""Live facts about providers that the capability table cannot know statically: whether a
keyless provider is up (symbia-labs, ollama, vllm: `ProviderSpec.health_url`), and which models
a server lists (`ProviderSpec.models_url`, an OpenAI-style `GET /models`).

For `/capabilities`: a provider with a health URL is `available` iff `available()` is True,
whatever credentials exist; `available()` returns None for providers without one (decide by
credential). For model lists: `models()` returns the live list, or the static models.json /
providers-file list when the provider has no models URL or the server does not answer.
Answers are cached for a few seconds so that a burst of `/capabilities` calls costs one probe.
"""

import time
from typing import Any

from service.errors import GatewayError
from service.providers.base import ProviderSpec, UpstreamCall
from service.providers.models import ModelInfo, models_for
from service.transport import UpstreamTransport

_KNOWN_CAPABILITIES = ("chat", "completion", "embedding", "vision", "function_calling", "reasoning")


def _capabilities(raw: Any) -> tuple[str, ...]:
    """The original maps anything it does not know to chat (reference §5.2)."""
    if not isinstance(raw, list) or not raw:
        return ("chat",)
    mapped = [c if c in _KNOWN_CAPABILITIES else "chat" for c in (str(x).lower() for x in raw)]
    return tuple(dict.fromkeys(mapped))


def parse_model_list(provider: str, payload: Any, *, local: bool) -> tuple[ModelInfo, ...]:
    """An OpenAI-style `{data: [{id, ...}]}` list. The Symbia Models service extends each entry
    (`capabilities`, `context_length`, `memory_usage_mb`, and `symbia.source`); it also lists
    remote models that it only brokers back through this gateway, which are left out here."""
    items = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ValueError("model list has no data array")
    models = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        symbia = item.get("symbia") if isinstance(item.get("symbia"), dict) else {}
        if symbia.get("source", "local") != "local":
            continue
        size = item.get("memory_usage_mb") or item.get("memoryUsageMB")
        description = f"Local GGUF model ({size}MB)" if local and size else ("Local model" if local else None)
        models.append(ModelInfo(
            id=str(item["id"]), name=str(item.get("name") or item["id"]), provider=provider,
            capabilities=_capabilities(item.get("capabilities")),
            context_window=item.get("context_length") or item.get("contextLength") or item.get("context_window"),
            input_price=0.0 if local else None, output_price=0.0 if local else None, description=description,
        ))
    return tuple(models)


class ProviderProbe:
    def __init__(self, transport: UpstreamTransport, *, timeout_s: float = 2.0, ttl_s: float = 10.0) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _cached(self, key: tuple[str, str]) -> Any:
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        return None

    async def _get(self, spec: ProviderSpec, url: str, api_key: str | None) -> tuple[int, Any]:
        call = UpstreamCall("GET", url, None, spec.adapter.headers(api_key))
        response = await self._transport.send(spec.name, call, self._timeout_s,
                                              provider=spec.name, operation="probe")
        return response.status, response.payload

    async def available(self, spec: ProviderSpec) -> bool | None:
        """True when the provider's health URL answers 2xx, False when it does not (or not at
        all), None when the provider has no health URL."""
        if not spec.health_url:
            return None
        key = (spec.name, "health")
        cached = self._cached(key)
        if cached is not None:
            return cached
        try:
            status, _ = await self._get(spec, spec.health_url, None)
            up = 200 <= status < 300
        except GatewayError:
            up = False
        self._cache[key] = (time.monotonic(), up)
        return up

    async def models(self, spec: ProviderSpec, api_key: str | None = None) -> tuple[ModelInfo, ...]:
        """Live models when the provider lists them, else the static list. An unreachable server
        lists nothing live and falls back to the static list (empty for symbia-labs, as the
        original answers `[]`)."""
        if not spec.models_url:
            return models_for(spec.name)
        key = (spec.name, "models")
        cached = self._cached(key) if api_key is None else None
        if cached is not None:
            return cached
        try:
            status, payload = await self._get(spec, spec.models_url, api_key)
            if not 200 <= status < 300:
                return models_for(spec.name)
            models = parse_model_list(spec.name, payload, local=not spec.needs_credential)
        except (GatewayError, ValueError):
            return models_for(spec.name)
        if api_key is None:  # a list fetched with someone's key is not served to others
            self._cache[key] = (time.monotonic(), models)
        return models
