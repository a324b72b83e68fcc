"""Internal Symbia services as read-only global built-ins, discovered from
`<service URL>/docs/openapi.json` when INTEGRATIONS_INTERNAL_SERVICES names them (reference
§6.2). Their URLs come from the operator, so they are fetched and invoked on the trusted
internal family, and invoke forwards the caller's token, org, request id and trace context
to them (and only to them).

Every worker runs the sync at start-up in the background (service/registry/builtins.py: the
first to write a changed spec wins, the others see it through the KV watch); an admin's
refresh of such an entry runs it again.
"""

import asyncio
import logging
import re

from contracts.envelope import ErrorCategory, Reason
from contracts.registry import OpenApiConfig
from service.errors import GatewayError
from service.registry.builtins import SYSTEM, save_builtin, sync_with_retries
from service.registry.discovery import Discovery
from service.registry.model import Entry, OperationSet, now_iso
from service.registry.store import RegistryStore

log = logging.getLogger("symbia.integrations.registry")

_SPEC_PATH = "/docs/openapi.json"
_TIMEOUT_S = 10.0
_IDENTITY_EXCLUDE = re.compile(r"password|reset|forgot", re.IGNORECASE)


class InternalServices:
    def __init__(self, services: dict[str, str], store: RegistryStore, discovery: Discovery) -> None:
        self.services = {key: url.rstrip("/") for key, url in services.items()}
        self._store = store
        self._discovery = discovery
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.services:
            self._task = asyncio.create_task(self._sync_all())

    async def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def _sync_all(self) -> None:
        await sync_with_retries("internal service", {key: url + _SPEC_PATH for key, url in self.services.items()},
                                self.sync_one)

    async def sync_one(self, key: str, force: bool = False) -> Entry:
        url = self.services.get(key)
        if url is None:
            raise GatewayError(f"{key} is not a configured internal service", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        exclude = _IDENTITY_EXCLUDE.search if key == "identity" else None
        found = await self._discovery.openapi(
            OpenApiConfig(specUrl=url + _SPEC_PATH, serverUrl=url), name=key, trusted=True, id_prefix=key,
            extra_tags=("internal", "symbia"), exclude=exclude, timeout_s=_TIMEOUT_S)
        previous = await self._store.fetch(None, key)
        if (not force and previous is not None and previous.builtin and previous.server_url == found.server_url
                and previous.metadata.get("specHash") == found.spec_hash):
            return previous
        now = now_iso()
        entry = Entry(
            key=key, org=None, type="builtin", name=key.capitalize(), description=f"Symbia {key} service",
            openapi={"specUrl": url + _SPEC_PATH, "serverUrl": found.server_url, "specVersion": found.spec_version,
                     "info": found.info},
            auth={"type": "none"}, tags=["internal", "symbia"],
            metadata={"isInternal": True, "specHash": found.spec_hash}, version=previous.version + 1 if previous else 1,
            last_synced_at=now, created_at=previous.created_at if previous else now, created_by=SYSTEM,
            updated_at=now, updated_by=SYSTEM, builtin=True, source="internal",
            operation_count=len(found.operations))
        saved = await save_builtin(self._store, entry, OperationSet(found.operations, found.namespace), previous)
        log.info("internal service %s: %d operations from %s", key, saved.operation_count, url)
        return saved
