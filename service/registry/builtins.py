"""What the background syncs of global read-only built-ins share (internal Symbia services,
Catalog integrations): every worker runs them; the first to write a changed entry wins
(compare-and-set) and the others see it through the KV watch; failures are retried a few times,
then left to an admin's refresh.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.logs import mask_url
from service.registry.model import Entry, OperationSet, now_iso
from service.registry.store import RegistryStore, VersionConflict

log = logging.getLogger("symbia.integrations.registry")

# Delays before each attempt of a background sync.
ATTEMPTS = (0.0, 5.0, 15.0)
SYSTEM = "system"


class NotSyncable(GatewayError):
    """A source that cannot become a built-in as it is (reserved key, misconfigured): a warning
    for the background sync (not retried), a 400 for an admin's refresh."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"'{key}' cannot be registered as a built-in: {why}", ErrorCategory.validation,
                         reason=Reason.INTEGRATION_MISCONFIGURED)


def registry_event(action: str, entry: Entry, principal: str | None) -> tuple[str, dict[str, Any]]:
    """Subject and body of the registry event of a write (docs/REGISTRY.md)."""
    org_token = entry.org or subjects.REGISTRY_GLOBAL_ORG
    return f"{subjects.EVENTS_REGISTRY}.{org_token}.{entry.key}", {
        "action": action, "key": entry.key, "org": entry.org, "scope": entry.scope, "type": entry.type,
        "version": entry.version, "operationCount": entry.operation_count, "principal": principal, "at": now_iso()}


async def save_builtin(store: RegistryStore, entry: Entry, ops: OperationSet, previous: Entry | None) -> Entry:
    """Write a built-in unless another worker wrote it first (then its record is the answer)."""
    try:
        saved = await store.save(entry, ops, previous=previous)
    except VersionConflict:
        return await store.fetch(None, entry.key) or entry
    await store.publish(*registry_event("refreshed" if previous else "registered", saved, SYSTEM))
    return saved


async def remove_builtin(store: RegistryStore, entry: Entry) -> None:
    try:
        await store.delete(entry)
    except VersionConflict:  # changed or removed by another worker meanwhile
        return
    await store.publish(*registry_event("deleted", entry, SYSTEM))


async def sync_with_retries(what: str, pending: dict[str, str], sync_one: Callable[[str], Awaitable[Any]],
                            attempts: tuple[float, ...] = ATTEMPTS) -> None:
    """`pending`: key → where its definition comes from (for the log)."""
    pending = dict(pending)
    for delay in attempts:
        await asyncio.sleep(delay)
        for key in list(pending):
            try:
                await sync_one(key)
                del pending[key]
            except NotSyncable as exc:
                log.warning("%s %s: skipped: %s", what, key, exc.message)
                del pending[key]
            except Exception as exc:  # logged; retried, then left to an admin's refresh
                log.warning("%s %s: cannot load %s: %s", what, key, mask_url(pending[key]), exc)
        if not pending:
            return
