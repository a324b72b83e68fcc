"""Which models a provider offers to a caller (reference §5.2, fixed).

A provider whose adapter can list models (`ModelLister`, e.g. OpenAI's `GET /models`) is asked
with the caller's key, and the answer is cached per credential (a fingerprint of the key) for
INTEGRATIONS_MODEL_LIST_TTL_S: a list fetched with one user's key is never served to another
user (the original cached it globally per provider). Without a key, when listing fails, and for
providers that cannot list, the static list of models.json is served, in its order (UIs take
the first entry).
"""

import logging

from service.cache import TTLCache, fingerprint
from service.errors import GatewayError
from service.providers.base import ModelLister, ProviderSpec
from service.providers.models import ModelInfo, describe, models_for
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations.models")

# After a failed listing, the static list is served for this long before trying again.
_FAILURE_TTL_S = 30.0


class ModelLists:
    def __init__(self, transport: UpstreamTransport, cache: TTLCache[tuple[ModelInfo, ...]], *, ttl_s: float,
                 timeout_s: float) -> None:
        self._transport = transport
        self._cache = cache
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s

    async def models(self, spec: ProviderSpec, api_key: str | None) -> tuple[ModelInfo, ...]:
        adapter = spec.adapter
        if not isinstance(adapter, ModelLister) or (spec.needs_credential and not api_key):
            return models_for(spec.name)
        key = (spec.name, fingerprint(api_key) if api_key else None)
        return await self._cache.get_or_load(key, lambda: self._list(spec, adapter, api_key))

    async def _list(self, spec: ProviderSpec, adapter: ModelLister,
                    api_key: str | None) -> tuple[tuple[ModelInfo, ...], float]:
        try:
            response = await self._transport.send(spec.name, adapter.models_call(api_key), self._timeout_s,
                                                   provider=spec.name, operation="models.list")
            if not 200 <= response.status < 300:
                raise ValueError(f"status {response.status}")
            ids = adapter.parse_models(response.payload)
        except (GatewayError, ValueError, TypeError, AttributeError) as exc:
            log.info("listing %s models failed (%s); serving the static list", spec.name,
                     getattr(exc, "reason", None) or exc)
            return models_for(spec.name), _FAILURE_TTL_S
        if not ids:
            return models_for(spec.name), self._ttl_s
        return tuple(describe(spec.name, model) for model in ids), self._ttl_s
