"""The caller's MCP tools: one per operation of every integration the caller's org sees (provider
built-ins the caller holds a credential for, global entries, the org's own entries), with the
name → operation map that `tools/call` resolves through (names are never parsed back).

Names: `<integration key>_<operation id>` with every character outside `[A-Za-z0-9_-]` written
`_` (the original's visible format: `openai_chat_completions_create`, `tools_tool_read_file`),
at most 64 characters. A name that is longer, or already taken by an operation that comes first,
is cut and given a suffix `_<8+ hex>` of a hash of (key, operation id): the same operation keeps
the same name on every worker and across restarts. Claim order: provider built-ins, then global
entries, then the org's entries, each by creation time then key, operations in document order;
so a new registration never renames the tools that existed before it.

The catalog of an org is built once per state of the registry that org sees (a fingerprint of
its visible entries) and kept for the most recent orgs; building runs in a thread.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.mcp import META_INTEGRATION, META_OPERATION
from service.auth.access import Caller
from service.credentials import CredentialResolver
from service.mcp.schemas import (
    ArgumentPlan,
    body_input,
    openapi_input,
    output_schema,
    parameters_input,
)
from service.providers.base import ProviderSpec
from service.registry.model import Entry, OperationSet
from service.registry.registry import Registry

log = logging.getLogger("symbia.integrations.mcp")

NAME_LIMIT = 64
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DESTRUCTIVE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_UPSTREAM_HINTS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
_MAX_DESCRIPTION = 2048
_MAX_TITLE = 200


def readable_name(key: str, operation_id: str) -> str:
    return _NOT_NAME.sub("_", f"{key}_{operation_id}")


def assign_names(claims: list[tuple[str, str]]) -> list[str]:
    """Names for (key, operation id) claims in priority order: injective, stable, ≤ 64 chars."""
    taken: set[str] = set()
    names = []
    for key, operation_id in claims:
        name = readable_name(key, operation_id)
        digest = hashlib.sha256(f"{key}\x00{operation_id}".encode()).hexdigest()
        length = 8
        while len(name) > NAME_LIMIT or name in taken:
            name = f"{readable_name(key, operation_id)[:NAME_LIMIT - length - 1]}_{digest[:length]}"
            length += 4
        taken.add(name)
        names.append(name)
    return names


@dataclass(slots=True)
class Tool:
    name: str
    key: str                                # integration key
    operation: str                          # operation id
    wire: dict[str, Any]                    # the MCP Tool object
    plan: ArgumentPlan
    output_wrapped: bool
    provider: str | None                    # provider built-ins: listed only to callers with a credential
    summary: str | None
    tags: list[str]
    _validators: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The invoke operation path: `<key>.<operation id>`."""
        return f"{self.key}.{self.operation}"

    def validator(self, which: str) -> Any:
        """The compiled Draft 2020-12 validator of the input or output schema (built once)."""
        found = self._validators.get(which)
        if found is None:
            from jsonschema import Draft202012Validator

            schema = self.wire["inputSchema" if which == "input" else "outputSchema"]
            found = self._validators[which] = Draft202012Validator(schema)
        return found


@dataclass(slots=True)
class Catalog:
    tools: list[Tool]                       # sorted by name
    by_name: dict[str, Tool]


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _description(entry: Entry, op: dict[str, Any]) -> str:
    summary, description = _text(op.get("summary")), _text(op.get("description"))
    if entry.source == "provider":
        parts = [f"{summary or op['id']} with {entry.name}, through the gateway (which holds the credential). "
                 "Arguments: the execute params (`model` is required)."]
    elif summary and description and description.startswith(summary):
        parts = [description]      # MCP tools: the summary is the description's first line
    else:
        parts = [text for text in (summary, description) if text]
        if len(parts) == 2 and parts[0] == parts[1]:
            parts = parts[:1]
    if not parts:
        parts.append(f"Execute {entry.key} {op['id']}")
    if op.get("method") and op.get("path") and entry.source != "provider":
        parts.append(f"({entry.name}: {op['method']} {op['path']})")
    text = "\n\n".join(parts)
    return text if len(text) <= _MAX_DESCRIPTION else text[:_MAX_DESCRIPTION - 1] + "…"


def _http_annotations(method: str | None, internal: bool) -> dict[str, Any]:
    method = (method or "POST").upper()
    hints: dict[str, Any] = {"readOnlyHint": method in _SAFE_METHODS, "openWorldHint": not internal}
    if method not in _SAFE_METHODS:
        hints["destructiveHint"] = method in _DESTRUCTIVE_METHODS
    hints["idempotentHint"] = method in _IDEMPOTENT_METHODS
    return hints


def build_tool(entry: Entry, op: dict[str, Any], name: str) -> Tool:
    title = f"{entry.name}: {_text(op.get('summary')) or op['id']}"[:_MAX_TITLE]
    output, wrapped = None, False
    if "mcpTool" in op:
        upstream = op["mcpTool"]
        input_schema, plan = body_input(upstream.get("inputSchema") or {}), ArgumentPlan(all_to_body=True)
        output, wrapped = output_schema(upstream.get("outputSchema"), convert=False)
        # Upstream hints are the server's claims, passed on as hints (clients treat them as untrusted).
        annotations = {k: v for k, v in (upstream.get("annotations") or {}).items() if k in _UPSTREAM_HINTS}
        title = f"{entry.name}: {upstream.get('title') or upstream['name']}"[:_MAX_TITLE]
    elif "mcpResource" in op or "mcpPrompt" in op:
        input_schema, plan = parameters_input(op), ArgumentPlan(all_to_body=True)
        annotations = {"readOnlyHint": True, "openWorldHint": True}
    elif entry.source == "provider":
        input_schema = body_input((op.get("requestBody") or {}).get("schema") or {})
        plan = ArgumentPlan(all_to_body=True)
        annotations = {"readOnlyHint": True, "openWorldHint": True}
    else:
        input_schema, plan = openapi_input(op, entry.auth or {})
        output, wrapped = output_schema(op.get("responseSchema"), convert=True)
        annotations = _http_annotations(op.get("method"), entry.source == "internal")
    annotations = {"title": title, **annotations}
    wire: dict[str, Any] = {"name": name, "title": title, "description": _description(entry, op),
                            "inputSchema": input_schema}
    if output is not None:
        wire["outputSchema"] = output
    wire["annotations"] = annotations
    wire["_meta"] = {META_INTEGRATION: entry.key, META_OPERATION: op["id"]}
    return Tool(name=name, key=entry.key, operation=op["id"], wire=wire, plan=plan, output_wrapped=wrapped,
                provider=entry.key if entry.source == "provider" else None, summary=_text(op.get("summary")),
                tags=[str(t) for t in op.get("tags") or []])


def _claim_order(entry: Entry) -> tuple[int, str, str]:
    rank = 0 if entry.source == "provider" else 1 if entry.org is None else 2
    return rank, entry.created_at or "", entry.key


def build_catalog(sets: list[tuple[Entry, OperationSet]]) -> Catalog:
    claims: list[tuple[Entry, dict[str, Any]]] = []
    for entry, ops in sorted(sets, key=lambda pair: _claim_order(pair[0])):
        seen: set[str] = set()
        for op in ops.operations:
            if op["id"] in seen:    # invoke resolves an id to its first operation; so does the tool
                continue
            seen.add(op["id"])
            claims.append((entry, op))
    names = assign_names([(entry.key, op["id"]) for entry, op in claims])
    tools = []
    for (entry, op), name in zip(claims, names, strict=True):
        try:
            tools.append(build_tool(entry, op, name))
        except Exception:   # one malformed operation must not hide every other tool
            log.exception("cannot describe operation %s of %s as a tool", op.get("id"), entry.key)
    tools.sort(key=lambda tool: tool.name)
    return Catalog(tools, {tool.name: tool for tool in tools})


class ToolCatalog:
    def __init__(self, registry: Registry, providers: Mapping[str, ProviderSpec], credentials: CredentialResolver,
                 max_orgs: int = 256) -> None:
        self._registry = registry
        self._providers = providers
        self._credentials = credentials
        self._max_orgs = max_orgs
        self._cache: OrderedDict[str, tuple[tuple, Catalog]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def catalog(self, org: str) -> Catalog:
        await self._registry.ready()
        entries = self._registry.visible(org)
        fingerprint = tuple((e.key, e.org, e.version, e.doc, e.revision) for e in entries)
        cached = self._cache.get(org)
        if cached is not None and cached[0] == fingerprint:
            self._cache.move_to_end(org)
            return cached[1]
        lock = self._locks.setdefault(org, asyncio.Lock())
        async with lock:  # one build per org and registry state, however many callers ask
            cached = self._cache.get(org)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            sets = [(entry, await self._registry.operations(entry)) for entry in entries]
            catalog = await asyncio.to_thread(build_catalog, sets)
            self._cache[org] = (fingerprint, catalog)
            self._cache.move_to_end(org)
            while len(self._cache) > self._max_orgs:
                evicted, _ = self._cache.popitem(last=False)
                self._locks.pop(evicted, None)
        return catalog

    async def usable_providers(self, caller: Caller) -> set[str]:
        """Providers the caller can call: keyless ones, and those it holds a credential for."""
        async def usable(spec: ProviderSpec) -> bool:
            if not spec.needs_credential:
                return True
            found = await self._credentials.resolve(caller, spec.identity_key, None)
            return found is not None and bool(found.api_key)

        specs = list(self._providers.values())
        results = await asyncio.gather(*(usable(spec) for spec in specs), return_exceptions=True)
        return {spec.name for spec, ok in zip(specs, results, strict=True) if ok is True}

    async def for_caller(self, caller: Caller) -> list[Tool]:
        """The caller's tools, sorted by name (what tools/list pages through)."""
        catalog = await self.catalog(caller.org)
        usable = await self.usable_providers(caller)
        return [tool for tool in catalog.tools if tool.provider is None or tool.provider in usable]

    async def find(self, caller: Caller, name: str) -> Tool | None:
        """A provider tool not listed for want of a credential still resolves: calling it answers
        with the execute pipeline's own "no credential" error, which says where to add one."""
        return (await self.catalog(caller.org)).by_name.get(name)


def page_start(tools: list[Tool], after: str | None) -> int:
    """Index of the first tool after the name `after` (still correct if that tool went away)."""
    if after is None:
        return 0
    return bisect.bisect_right([tool.name for tool in tools], after)
