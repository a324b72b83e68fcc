"""What a caller sees of the registry: the provider built-ins (from the capability table, in
memory, read-only), global entries (internal Symbia services and Catalog integrations, both
read-only built-ins; admin registrations) and the
entries of the caller's own org. Lookup order for a key: provider built-in, the caller's org,
global. Keys of built-ins are reserved, so an org can never shadow `openai`."""

from collections.abc import Mapping
from typing import Any

from contracts.execute import ExecuteParams
from service.providers.base import ProviderSpec
from service.registry.model import Entry, OperationSet, now_iso
from service.registry.namespace import build_namespace
from service.registry.store import RegistryStore, kv_key

# Not an integration key: `integrations.` is the optional prefix of invoke operation paths.
RESERVED_WORDS = frozenset({"integrations"})

_LLM_KINDS = {"chat", "vision", "generate", "responses"}


def _provider_operations(spec: ProviderSpec) -> list[dict[str, Any]]:
    schema = ExecuteParams.model_json_schema(by_alias=True)
    defs = schema.get("$defs")
    ops = []
    for op in spec.operations.values():
        properties = {k: v for k, v in schema["properties"].items() if k in op.params}
        body_schema: dict[str, Any] = {"type": "object", "properties": properties, "required": ["model"],
                                       "additionalProperties": False}
        if defs:
            body_schema["$defs"] = defs
        tags = ["chat", "llm"] if op.kind in _LLM_KINDS else ["embedding"]
        ops.append({
            "id": f"{op.name}.create",
            "operationId": op.name,
            "method": "POST",
            "summary": op.summary or f"{spec.display_name} {op.name}",
            "description": f"{op.summary}. Runs the execute pipeline of {spec.display_name}; the body is the "
                           "execute `params` object.",
            "tags": tags,
            "parameters": [{"name": name, "location": "body", "required": name == "model"}
                           for name in sorted(op.params)],
            "requestBody": {"required": True, "contentType": "application/json", "schema": body_schema},
        })
    return ops


def provider_entries(providers: Mapping[str, ProviderSpec]) -> dict[str, tuple[Entry, OperationSet]]:
    started = now_iso()
    out = {}
    for name, spec in providers.items():
        ops = _provider_operations(spec)
        entry = Entry(key=name, org=None, type="builtin", name=spec.display_name, description=spec.description,
                      auth={"type": "bearer"} if spec.needs_credential else {"type": "none"},
                      tags=["provider", "llm"], builtin=True, source="provider", operation_count=len(ops),
                      last_synced_at=started, created_at=started, metadata={"provider": name})
        out[name] = (entry, OperationSet(ops, build_namespace(ops)))
    return out


class Registry:
    def __init__(self, store: RegistryStore, providers: Mapping[str, ProviderSpec],
                 internal_keys: frozenset[str] = frozenset()) -> None:
        self.store = store
        self._providers = provider_entries(providers)
        self.internal_keys = internal_keys

    def builtin_key(self, key: str) -> bool:
        """Keys the configuration reserves: providers, internal services, reserved words."""
        return key in self._providers or key in self.internal_keys or key in RESERVED_WORDS

    def reserved(self, key: str) -> bool:
        """Keys nobody may register, admins included: the configured ones and those of the
        built-ins in the store (Catalog integrations)."""
        if self.builtin_key(key):
            return True
        entry = self.store.get(None, key)
        return entry is not None and entry.builtin

    async def ready(self) -> None:
        await self.store.ready()

    def lookup(self, org: str, key: str) -> Entry | None:
        provider = self._providers.get(key)
        if provider is not None:
            return provider[0]
        return self.store.get(org, key) or self.store.get(None, key)

    async def find(self, org: str, key: str) -> Entry | None:
        """`lookup`, then the KV itself: a registration made on another worker a moment ago may
        not have reached this worker's watcher yet."""
        return self.lookup(org, key) or await self.store.fetch(org, key) or await self.store.fetch(None, key)

    def visible(self, org: str) -> list[Entry]:
        own = {e.key: e for e in self.store.entries() if e.org == org}
        shared = [e for e in self.store.entries() if e.org is None and e.key not in own]
        entries = [*(entry for entry, _ in self._providers.values()), *shared, *own.values()]
        return sorted(entries, key=lambda e: (not e.builtin, e.key))

    async def operations(self, entry: Entry) -> OperationSet:
        if entry.source == "provider":
            return self._providers[entry.key][1]
        return await self.store.operations(entry)

    @staticmethod
    def kv_key(entry: Entry) -> str:
        return kv_key(entry.org, entry.key)
