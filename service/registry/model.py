"""A registry entry as stored, and its operations.

The entry (small: identity, configuration, counters) lives in the KV bucket; its operations,
namespace tree and inline spec can be megabytes and live in the object store, named by
`Entry.doc`. Secrets of the configuration (MCP `env` and `headers` values) are stored here and
removed by `public_view`, the only way an entry leaves the service.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from contracts.registry import REDACTED
from service.logs import mask_url
from service.registry.namespace import walk


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Entry:
    key: str
    org: str | None                          # None: global
    type: str                                # openapi | mcp | builtin | custom
    name: str
    description: str | None = None
    openapi: dict[str, Any] | None = None    # {specUrl, serverUrl, hasInlineSpec}
    mcp: dict[str, Any] | None = None        # McpConfig, with secrets
    auth: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "active"
    version: int = 1
    last_synced_at: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None
    builtin: bool = False
    source: str = "user"                     # user | provider | internal
    operation_count: int = 0
    doc: str | None = None                   # object name of the OperationSet (None: in memory)
    spec_doc: str | None = None              # object name of the inline spec, when there is one
    revision: int = field(default=0, compare=False)   # KV revision; not stored

    @property
    def scope(self) -> str:
        return "global" if self.org is None else "org"

    @property
    def server_url(self) -> str | None:
        return (self.openapi or {}).get("serverUrl")

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("revision")
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes, revision: int = 0) -> "Entry":
        data = orjson.loads(raw)
        names = cls.__dataclass_fields__.keys()
        entry = cls(**{k: v for k, v in data.items() if k in names and k != "revision"})
        entry.revision = revision
        return entry


@dataclass(slots=True)
class OperationSet:
    """The operations of one entry, indexed for invoke's lookup (reference §6.5: by id, then by
    operationId, then by walking the namespace tree)."""

    operations: list[dict[str, Any]]
    namespace: dict[str, Any]
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_operation_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for op in self.operations:
            self.by_id.setdefault(op["id"], op)
            if op.get("operationId"):
                self.by_operation_id.setdefault(op["operationId"], op)

    def find(self, path: str) -> dict[str, Any] | None:
        op = self.by_id.get(path) or self.by_operation_id.get(path)
        if op is None:
            target = walk(self.namespace, path)
            op = self.by_id.get(target) if target else None
        return op

    def to_json(self) -> bytes:
        return orjson.dumps({"operations": self.operations, "namespace": self.namespace})

    @classmethod
    def from_json(cls, raw: bytes) -> "OperationSet":
        data = orjson.loads(raw)
        return cls(data.get("operations") or [], data.get("namespace") or {})


EMPTY = OperationSet([], {})


def _redact(values: dict[str, str] | None) -> dict[str, str]:
    return {name: REDACTED for name in (values or {})}


def public_view(entry: Entry, ops: OperationSet | None, *, with_operations: bool = True) -> dict[str, Any]:
    """The Integration object of a reply: no secrets, no internal fields."""
    view: dict[str, Any] = {
        "id": f"builtin-{entry.key}" if entry.builtin else f"{entry.type}-{entry.key}",
        "key": entry.key,
        "name": entry.name,
        "description": entry.description,
        "type": entry.type,
        "scope": entry.scope,
        "org": entry.org,
        "builtin": entry.builtin,
        "auth": entry.auth,
        "operationCount": entry.operation_count,
        "status": entry.status,
        "lastSyncedAt": entry.last_synced_at,
        "version": entry.version,
        "tags": entry.tags,
        "metadata": entry.metadata,
        "createdBy": entry.created_by,
        "createdAt": entry.created_at,
        "updatedBy": entry.updated_by,
        "updatedAt": entry.updated_at,
    }
    if entry.openapi is not None:
        openapi = dict(entry.openapi)
        for name in ("specUrl", "serverUrl"):
            if openapi.get(name):
                openapi[name] = mask_url(openapi[name])
        view["openapi"] = openapi
    if entry.mcp is not None:
        mcp = {k: v for k, v in entry.mcp.items() if k not in ("env", "headers")}
        if mcp.get("serverUrl"):
            mcp["serverUrl"] = mask_url(mcp["serverUrl"])
        mcp["env"] = _redact(entry.mcp.get("env"))
        mcp["headers"] = _redact(entry.mcp.get("headers"))
        view["mcp"] = mcp
    if with_operations:
        view["operations"] = ops.operations if ops else []
        view["namespace"] = ops.namespace if ops else {}
    return view


def keep_redacted(new: dict[str, str], old: Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """An update that sends back "[REDACTED]" (what it read) keeps the stored secret."""
    previous = dict(old or ())
    return {k: (previous.get(k, "") if v == REDACTED else v) for k, v in new.items()}
