"""Catalog integrations as read-only global built-ins (reference §1.1 step 1, §6.2): every
resource of the Catalog bootstrap with `type: "integration"` and `metadata.integrationType:
"openapi"` (the stock Telegram Bot API) becomes an OpenAPI integration whose operations are
parsed from `metadata.specUrl`, with `metadata.serverUrl` as server override,
`metadata.authType` / `authHeader` as its auth and the whole catalog `metadata` kept.

Catalog's URLs point at the internet, so unlike the internal services they are user-grade:
the spec is fetched through the outbound guard with the spec size and time limits, and the
server URL is guarded at invoke like any registration's.

Key: `metadata.integrationKey` when Catalog gives one, else the last segment of the resource
key (`integrations/channels/telegram` → `telegram`). A key of a provider, an internal service or
the gateway, or of a global entry an admin registered, is skipped with a warning.

Sync (service/registry/builtins.py): in the background once the registry has started, and again
whenever a Catalog load lists different integration resources; entries Catalog no longer lists
are removed. A spec that changed behind unchanged resources is picked up at the next start or
by an admin's refresh. Unchanged entries (spec hash, metadata) are not rewritten.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from contracts.envelope import ErrorCategory, Reason
from contracts.registry import KEY_PATTERN, OpenApiConfig
from service.errors import GatewayError
from service.invoke.auth import normalize_auth
from service.registry.builtins import (
    ATTEMPTS,
    SYSTEM,
    NotSyncable,
    remove_builtin,
    save_builtin,
    sync_with_retries,
)
from service.registry.discovery import Discovery
from service.registry.model import Entry, OperationSet, now_iso
from service.registry.store import RegistryStore, valid_key

log = logging.getLogger("symbia.integrations.registry")

SOURCE = "catalog"


def integration_key(resource: dict[str, Any]) -> str | None:
    metadata = resource.get("metadata") or {}
    key = metadata.get("integrationKey")
    if not isinstance(key, str):
        resource_key = resource.get("key")
        key = resource_key.rstrip("/").rsplit("/", 1)[-1] if isinstance(resource_key, str) else None
    return key.lower() if key else None


def integration_resources(resources: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The OpenAPI integrations of a bootstrap by key (the first resource of a key wins), and
    what was wrong with the others."""
    found: dict[str, dict[str, Any]] = {}
    problems = []
    for resource in resources:
        metadata = resource.get("metadata")
        if resource.get("type") != "integration" or not isinstance(metadata, dict):
            continue
        if metadata.get("integrationType") != "openapi":
            continue
        key = integration_key(resource)
        name = resource.get("key") or resource.get("id")
        if not key or not valid_key(key):
            problems.append(f"{name}: the integration key {key!r} does not match {KEY_PATTERN}")
        elif not isinstance(metadata.get("specUrl"), str) or not metadata["specUrl"]:
            problems.append(f"{name}: no metadata.specUrl")
        elif key in found:
            problems.append(f"{name}: the key '{key}' is already used by {found[key].get('key')}")
        else:
            found[key] = resource
    return found, problems


def _content(entry: Entry) -> tuple:
    """What a sync may change; equal → nothing to write."""
    return entry.type, entry.name, entry.description, entry.openapi, entry.auth, entry.tags, entry.metadata


class CatalogIntegrations:
    def __init__(self, store: RegistryStore, discovery: Discovery, builtin_key: Callable[[str], bool],
                 attempts: tuple[float, ...] = ATTEMPTS) -> None:
        self._store = store
        self._discovery = discovery
        self._builtin_key = builtin_key       # keys of providers, internal services, reserved words
        self._attempts = attempts
        self._resources: dict[str, dict[str, Any]] | None = None    # None: Catalog has not answered yet
        self._started = False
        self._task: asyncio.Task | None = None

    def update(self, resources: list[dict[str, Any]]) -> None:
        """Every bootstrap Catalog answered with (a ProviderConfigs listener)."""
        found, problems = integration_resources(resources)
        if found == self._resources:
            return
        for problem in problems:
            log.warning("catalog integration %s: skipped", problem)
        self._resources = found
        if self._started:
            self._schedule()

    def start(self) -> None:
        """Once the registry store has started."""
        self._started = True
        if self._resources is not None:
            self._schedule()

    async def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _schedule(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()     # superseded by the newer bootstrap
        self._task = asyncio.create_task(self._sync_all())

    async def _sync_all(self) -> None:
        listed = dict(self._resources or {})
        for entry in self._store.entries():
            if entry.org is None and entry.source == SOURCE and entry.key not in listed:
                await remove_builtin(self._store, entry)
                log.info("catalog integration %s: removed (no longer in the Catalog bootstrap)", entry.key)
        await sync_with_retries("catalog integration", {k: r["metadata"]["specUrl"] for k, r in listed.items()},
                                self.sync_one, self._attempts)

    async def sync_one(self, key: str, force: bool = False) -> Entry:
        resource = (self._resources or {}).get(key)
        if resource is None:
            raise GatewayError(f"'{key}' is not in the Catalog bootstrap this worker loaded; it is removed once "
                               "Catalog no longer lists it", ErrorCategory.not_found,
                               reason=Reason.INTEGRATION_NOT_FOUND)
        if self._builtin_key(key):
            raise NotSyncable(key, "the key belongs to a provider, an internal service or the gateway")
        previous = await self._store.fetch(None, key)
        if previous is not None and previous.source != SOURCE:
            raise NotSyncable(key, "a global integration registered by an admin uses the key")
        metadata: dict[str, Any] = resource["metadata"]
        try:
            config = OpenApiConfig(specUrl=metadata["specUrl"], serverUrl=metadata.get("serverUrl") or None)
        except ValidationError as exc:
            raise NotSyncable(key, f"invalid specUrl or serverUrl ({exc.errors()[0]['msg']})") from None
        found = await self._discovery.openapi(config, name=key)    # outbound guard, spec limits
        auth = normalize_auth(None, metadata)
        if auth["type"] == "none":
            auth = normalize_auth(found.auth, metadata)
        if auth["type"] == "path" and "{" + auth["placeholder"] + "}" not in (found.server_url or ""):
            raise NotSyncable(key, f"auth type path needs {{{auth['placeholder']}}} in the server URL")
        now = now_iso()
        openapi = {"specUrl": config.specUrl, "serverUrl": found.server_url, "serverUrlOverride": config.serverUrl,
                   "hasInlineSpec": False, "specVersion": found.spec_version, "info": found.info or None}
        description = resource.get("description")
        entry = Entry(
            key=key, org=None, type="openapi", name=str(resource.get("name") or key),
            description=description if isinstance(description, str) else None,
            openapi={k: v for k, v in openapi.items() if v is not None}, auth=auth, tags=["catalog"],
            metadata={**metadata, "catalogKey": resource.get("key"), "specHash": found.spec_hash},
            version=previous.version + 1 if previous else 1, last_synced_at=now,
            created_at=previous.created_at if previous else now, created_by=SYSTEM, updated_at=now, updated_by=SYSTEM,
            builtin=True, source=SOURCE, operation_count=len(found.operations))
        if not force and previous is not None and _content(previous) == _content(entry):
            return previous
        saved = await save_builtin(self._store, entry, OperationSet(found.operations, found.namespace), previous)
        log.info("catalog integration %s: %d operations from %s", key, saved.operation_count, resource.get("key"))
        return saved
