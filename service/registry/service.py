"""The registry's command handlers (one per subject): register, MCP register, list, get,
operations, refresh, delete, namespace, search and the parse previews.

Rules (docs/REGISTRY.md): an org's entries are visible to its members only; global entries
to everyone; built-in keys are read-only for everyone; global writes need the admin
entitlement; updating an entry needs its current `version` and is allowed to whoever created
it or an admin. Replies never contain secrets.
"""

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from contracts.envelope import ErrorCategory, Reason
from contracts.registry import (
    McpConfig,
    McpRegisterRequest,
    NamespaceRequest,
    OpenApiConfig,
    ParseMcpRequest,
    ParseOpenApiRequest,
    RefreshRequest,
    RegisterRequest,
    RegistryKeyRequest,
    RegistryListRequest,
    SearchRequest,
)
from service.auth.access import Access, Caller, require_admin
from service.commands import Command, Reply
from service.errors import GatewayError
from service.invoke.auth import misconfigured, needs_credential, normalize_auth
from service.invoke.credentials import IntegrationCredentials
from service.mcp.target import mcp_target
from service.registry.builtins import registry_event
from service.registry.discovery import Discovered, Discovery
from service.registry.model import Entry, OperationSet, keep_redacted, now_iso, public_view
from service.registry.namespace import build_namespace
from service.registry.policy import can_modify, not_owner, read_only
from service.registry.registry import Registry
from service.registry.store import VersionConflict

log = logging.getLogger("symbia.integrations.registry")


class BuiltinSync(Protocol):
    async def sync_one(self, key: str, force: bool = False) -> Entry: ...


def integration_not_found(key: str) -> GatewayError:
    return GatewayError(f"Integration not found: {key}", ErrorCategory.not_found, reason=Reason.INTEGRATION_NOT_FOUND)


def _conflict(message: str, reason: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.validation, status=409, reason=reason)


class RegistryService:
    request_id_prefix = "reg"

    def __init__(self, *, access: Access, registry: Registry, discovery: Discovery,
                 credentials: IntegrationCredentials, syncs: Mapping[str, BuiltinSync] | None = None) -> None:
        self._access = access
        self._registry = registry
        self._store = registry.store
        self._discovery = discovery
        self._credentials = credentials
        # Entry source → the sync that owns those built-ins (internal services, Catalog integrations):
        # an admin's refresh runs it again.
        self.syncs = dict(syncs or {})

    async def _caller(self, command: Command) -> Caller:
        caller = await self._access.caller(command.headers)
        await self._registry.ready()
        return caller

    # --- register ------------------------------------------------------------------------------

    async def register(self, command: Command) -> Reply:
        caller = await self._caller(command)
        return await self._register(command, caller, RegisterRequest.model_validate_json(command.body))

    async def mcp_register(self, command: Command) -> Reply:
        caller = await self._caller(command)
        flat = McpRegisterRequest.model_validate_json(command.body)
        config = McpConfig.model_validate(flat.model_dump(include=set(McpConfig.model_fields)))
        request = RegisterRequest(
            key=flat.key, type="mcp", name=flat.name or flat.key,
            description=flat.description or f"MCP server: {flat.key}", mcp=config, auth=flat.auth,
            tags=flat.tags, metadata=flat.metadata, scope=flat.scope, version=flat.version)
        return await self._register(command, caller, request)

    async def _register(self, command: Command, caller: Caller, request: RegisterRequest) -> Reply:
        key = request.key
        org = None if request.scope == "global" else caller.org
        if request.scope == "global":
            require_admin(caller, "register a global integration")
        if self._registry.reserved(key):
            raise read_only(key)
        if request.type == "builtin":
            require_admin(caller, "register a builtin integration")
        if org is not None and (self._store.get(None, key) or await self._store.fetch(None, key)):
            raise _conflict(f"'{key}' is the key of a global integration; choose another key",
                            Reason.INTEGRATION_EXISTS)
        previous = await self._store.fetch(org, key)
        if previous is not None:
            if previous.builtin:
                raise read_only(key)
            if request.version is None:
                raise _conflict(f"Integration '{key}' already exists (version {previous.version}). To update it, "
                                f"send \"version\": {previous.version}", Reason.INTEGRATION_EXISTS)
            if request.version != previous.version:
                raise _conflict(f"Integration '{key}' is at version {previous.version}, not {request.version}; "
                                "read it again and retry", Reason.VERSION_CONFLICT)
            if not can_modify(caller, previous):
                raise not_owner(key)
        mcp_config = self._mcp_config(request, previous)
        auth = normalize_auth(request.auth.model_dump(by_alias=True, exclude_none=True) if request.auth else None,
                              request.metadata)
        discovered = await self._discover(caller, request, mcp_config, auth)
        if request.auth is None and request.type == "openapi":
            auth = normalize_auth(discovered.auth, request.metadata)
        entry = self._entry(caller, request, org, previous, discovered, mcp_config, auth)
        return await self._save(command, caller, entry, discovered, previous,
                                "updated" if previous else "registered")

    @staticmethod
    def _mcp_config(request: RegisterRequest, previous: Entry | None) -> dict[str, Any] | None:
        if request.mcp is None:
            return None
        config = request.mcp.model_dump()
        old = (previous.mcp or {}) if previous else {}
        config["env"] = keep_redacted(config["env"], (old.get("env") or {}).items())
        config["headers"] = keep_redacted(config["headers"], (old.get("headers") or {}).items())
        return config

    async def _secret(self, caller: Caller, entry: Entry, auth: dict[str, Any]) -> str | None:
        if not needs_credential(auth):
            return None
        found = await self._credentials.resolve(caller, entry, None)
        if found is None or not found.api_key:
            raise GatewayError(f"No credential configured for integration {entry.key} (auth {auth['type']}); the "
                               f"server cannot be discovered without it. {self._credentials.where_to_add(entry)}",
                               ErrorCategory.auth, status=400, reason=Reason.INTEGRATION_CREDENTIAL_MISSING)
        return found.api_key

    async def _discover(self, caller: Caller, request: RegisterRequest, mcp_config: dict[str, Any] | None,
                        auth: dict[str, Any], inline: Any = None) -> Discovered:
        if request.type == "openapi":
            if request.openapi is None:
                return Discovered([], {})
            return await self._discovery.openapi(request.openapi, name=request.key, inline=inline)
        if request.type == "mcp":
            if mcp_config is None:
                return Discovered([], {})
            # the credential of the entry being written (its scope decides which local secret applies)
            org = None if request.scope == "global" else caller.org
            secret = await self._secret(caller, Entry(key=request.key, org=org, type="mcp", name=request.key), auth)
            return await self._discovery.mcp(mcp_target(mcp_config, auth, secret), name=request.key)
        # builtin / custom: the operations as given
        ops = [op.model_dump(by_alias=True, exclude_none=True) for op in request.operations or []]
        for op in ops:
            if op.get("method"):
                op["method"] = op["method"].upper()
        server = request.openapi.serverUrl if request.openapi else None
        if server:
            self._discovery.guard.check_url(server, "server URL")
        return Discovered(ops, build_namespace(ops), server)

    def _entry(self, caller: Caller, request: RegisterRequest, org: str | None, previous: Entry | None,
               discovered: Discovered, mcp_config: dict[str, Any] | None, auth: dict[str, Any]) -> Entry:
        now = now_iso()
        openapi = None
        if request.openapi is not None or request.type == "openapi":
            config = request.openapi or OpenApiConfig()
            openapi = {"specUrl": config.specUrl, "serverUrl": discovered.server_url,
                       "serverUrlOverride": config.serverUrl, "hasInlineSpec": discovered.inline_spec is not None,
                       "specVersion": discovered.spec_version, "info": discovered.info or None}
            openapi = {k: v for k, v in openapi.items() if v is not None}
        if mcp_config is not None and discovered.capabilities:
            mcp_config = {**mcp_config, "capabilities": discovered.capabilities}
        if auth.get("type") == "path":
            placeholder = "{" + auth.get("placeholder", "token") + "}"
            if placeholder not in ((openapi or {}).get("serverUrl") or (mcp_config or {}).get("serverUrl") or ""):
                raise misconfigured(f"auth type path needs {placeholder} in the server URL")
        return Entry(
            key=request.key, org=org, type=request.type, name=request.name or request.key,
            description=request.description, openapi=openapi, mcp=mcp_config, auth=auth, tags=request.tags,
            metadata=request.metadata, status="active", version=previous.version + 1 if previous else 1,
            last_synced_at=now, created_at=previous.created_at if previous else now,
            created_by=previous.created_by if previous else caller.principal.id, updated_at=now,
            updated_by=caller.principal.id, operation_count=len(discovered.operations))

    async def _save(self, command: Command, caller: Caller, entry: Entry, discovered: Discovered,
                    previous: Entry | None, action: str) -> Reply:
        ops = OperationSet(discovered.operations, discovered.namespace)
        try:
            saved = await self._store.save(entry, ops, discovered.inline_spec, previous=previous)
        except VersionConflict:
            raise _conflict(f"Integration '{entry.key}' changed while it was being saved; read it again and retry",
                            Reason.VERSION_CONFLICT) from None
        await self.publish(action, saved, caller.principal.id)
        body: dict[str, Any] = {"success": True, "integration": public_view(saved, ops),
                                "operationCount": saved.operation_count, "created": previous is None}
        if discovered.capabilities:
            body["capabilities"] = discovered.capabilities
        return command.json_reply(200, body)

    async def publish(self, action: str, entry: Entry, principal: str | None) -> None:
        await self._store.publish(*registry_event(action, entry, principal))

    # --- refresh, delete -------------------------------------------------------------------------

    async def refresh(self, command: Command) -> Reply:
        caller = await self._caller(command)
        request = RefreshRequest.model_validate_json(command.body)
        entry = await self._registry.find(caller.org, request.key)
        if entry is None:
            raise integration_not_found(request.key)
        if entry.source == "provider":
            raise read_only(entry.key)
        if entry.builtin:
            require_admin(caller, "refresh a built-in integration")
            sync = self.syncs.get(entry.source)
            if sync is None:
                raise read_only(entry.key)
            entry = await sync.sync_one(entry.key, force=True)
            ops = await self._registry.operations(entry)
            return command.json_reply(200, {"success": True, "integration": public_view(entry, ops),
                                            "operationCount": entry.operation_count, "created": False})
        if entry.org is None:
            require_admin(caller, "refresh a global integration")
        if not can_modify(caller, entry):
            raise not_owner(entry.key)
        stored = RegisterRequest(
            key=entry.key, type=entry.type, name=entry.name, description=entry.description,
            openapi=self._stored_openapi(entry), mcp=McpConfig.model_validate(entry.mcp) if entry.mcp else None,
            tags=entry.tags, metadata=entry.metadata, scope=entry.scope, version=entry.version)
        if entry.type in ("openapi", "mcp"):
            inline = await self._store.inline_spec(entry) if entry.spec_doc else None
            discovered = await self._discover(caller, stored, entry.mcp, entry.auth, inline=inline)
        else:
            current = await self._registry.operations(entry)
            discovered = Discovered(current.operations, current.namespace, entry.server_url)
        fresh = self._entry(caller, stored, entry.org, entry, discovered, entry.mcp, entry.auth)
        return await self._save(command, caller, fresh, discovered, entry, "refreshed")

    @staticmethod
    def _stored_openapi(entry: Entry) -> OpenApiConfig | None:
        if entry.openapi is None:
            return None
        return OpenApiConfig(specUrl=entry.openapi.get("specUrl"),
                             serverUrl=entry.openapi.get("serverUrlOverride") or (
                                 None if entry.openapi.get("specUrl") or entry.openapi.get("hasInlineSpec")
                                 else entry.openapi.get("serverUrl")))

    async def delete(self, command: Command) -> Reply:
        caller = await self._caller(command)
        key = RegistryKeyRequest.model_validate_json(command.body).key
        entry = await self._store.fetch(caller.org, key) or await self._store.fetch(None, key)
        if entry is None:
            if self._registry.lookup(caller.org, key) is not None:
                raise read_only(key)
            raise integration_not_found(key)
        if entry.builtin:
            raise read_only(key)
        if entry.org is None:
            require_admin(caller, "delete a global integration")
        if not can_modify(caller, entry):
            raise not_owner(key)
        try:
            await self._store.delete(entry)
        except VersionConflict:
            raise _conflict(f"Integration '{key}' changed while it was being deleted; retry",
                            Reason.VERSION_CONFLICT) from None
        await self.publish("deleted", entry, caller.principal.id)
        return command.json_reply(200, {"success": True, "key": key, "version": entry.version})

    # --- reads -----------------------------------------------------------------------------------

    async def list(self, command: Command) -> Reply:
        caller = await self._caller(command)
        request = RegistryListRequest.model_validate_json(command.body or b"{}")
        out = []
        for entry in self._registry.visible(caller.org):
            if (request.type and entry.type != request.type) or (request.scope and entry.scope != request.scope):
                continue
            out.append(public_view(entry, await self._registry.operations(entry)))
        return command.json_reply(200, {"integrations": out})

    async def _visible(self, caller: Caller, key: str) -> Entry:
        entry = await self._registry.find(caller.org, key)
        if entry is None:
            raise integration_not_found(key)
        return entry

    async def get(self, command: Command) -> Reply:
        caller = await self._caller(command)
        entry = await self._visible(caller, RegistryKeyRequest.model_validate_json(command.body).key)
        return command.json_reply(200, {"integration": public_view(entry, await self._registry.operations(entry))})

    async def operations(self, command: Command) -> Reply:
        caller = await self._caller(command)
        entry = await self._visible(caller, RegistryKeyRequest.model_validate_json(command.body).key)
        return command.json_reply(200, {"operations": (await self._registry.operations(entry)).operations})

    async def namespace(self, command: Command) -> Reply:
        caller = await self._caller(command)
        NamespaceRequest.model_validate_json(command.body or b"{}")
        trees = {}
        for entry in self._registry.visible(caller.org):
            trees[entry.key] = (await self._registry.operations(entry)).namespace
        return command.json_reply(200, {"integrations": trees})

    async def search(self, command: Command) -> Reply:
        caller = await self._caller(command)
        request = SearchRequest.model_validate_json(command.body or b"{}")
        if not request.q and not request.tag:
            raise GatewayError("Query parameter 'q' or 'tag' is required", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        needle = (request.q or "").lower()
        results: list[dict[str, Any]] = []
        for entry in self._registry.visible(caller.org):
            if request.integration and entry.key != request.integration:
                continue
            for op in (await self._registry.operations(entry)).operations:
                tags = op.get("tags") or []
                if request.tag:
                    hit = request.tag in tags
                else:
                    text = " ".join([op.get("id") or "", op.get("summary") or "", op.get("description") or "", *tags])
                    hit = needle in text.lower()
                if hit:
                    results.append({"integrationKey": entry.key, "integration": entry.key, "operation": op})
                    if len(results) >= request.limit:
                        return command.json_reply(200, {"results": results})
        return command.json_reply(200, {"results": results})

    # --- previews --------------------------------------------------------------------------------

    async def parse_openapi(self, command: Command) -> Reply:
        await self._caller(command)
        request = ParseOpenApiRequest.model_validate_json(command.body)
        found = await self._discovery.openapi(request, name="spec")
        auth = normalize_auth(found.auth)
        return command.json_reply(200, {
            "success": True, "operations": found.operations, "namespace": found.namespace,
            "serverUrl": found.server_url, "info": found.info, "authType": auth["type"], "auth": auth,
            "specVersion": found.spec_version})

    async def parse_mcp(self, command: Command) -> Reply:
        await self._caller(command)
        config = ParseMcpRequest.model_validate_json(command.body).model_dump()
        found = await self._discovery.mcp(mcp_target(config, {"type": "none"}, None), name="mcp")
        return command.json_reply(200, {"success": True, "operations": found.operations,
                                        "namespace": found.namespace, "capabilities": found.capabilities})
