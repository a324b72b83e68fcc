"""The integration registry: register, read, refresh, delete, search, parse (reference §6.1, §6.4,
§7.3, with the fixes of docs/REGISTRY.md).

An integration is org-scoped (visible to the members of one org) or global (visible to every
org; built-ins and entries an admin registered with `scope: "global"`). Secrets in a stored
configuration (MCP `env` and `headers` values) are never returned: replies show the names
with the value "[REDACTED]", and sending "[REDACTED]" back in an update keeps the stored value.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import subjects
from contracts.http import API_PREFIX, QueryParam, Route

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
REDACTED = "[REDACTED]"

IntegrationType = Literal["openapi", "mcp", "builtin", "custom"]
AuthType = Literal["bearer", "apiKey", "basic", "oauth2", "path", "header", "none"]
McpTransport = Literal["http", "streamable-http", "streamableHttp", "sse", "websocket", "stdio"]
ParameterLocation = Literal["path", "query", "header", "cookie", "body"]


class AuthConfig(BaseModel):
    """How invoke authenticates to the integration. Only the *kind* of credential is stored;
    the secret itself is resolved per call for the integration key (like provider keys), so
    unknown fields (a `token`, a `password`) are rejected rather than stored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: AuthType = "none"
    header: str | None = Field(None, max_length=128, description="apiKey/header: the header name (default X-API-Key)")
    in_: Literal["header", "query", "cookie"] | None = Field(
        None, alias="in", description="apiKey: where the key goes (default header)")
    name: str | None = Field(None, max_length=128, description="apiKey: header, query or cookie name")
    placeholder: str | None = Field(
        None, max_length=64, description="path: the {placeholder} in the server URL replaced by the key (token)")
    credentialKey: str | None = Field(None, max_length=128, description="accepted for compatibility; ignored")
    tokenUrl: str | None = Field(None, max_length=2048, description="oauth2: informational")
    scopes: list[str] | None = None


class OpenApiConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    specUrl: str | None = Field(None, max_length=2048)
    spec: dict[str, Any] | str | None = Field(
        None, description="inline OpenAPI 3.x / Swagger 2.0 (object, JSON or YAML)")
    serverUrl: str | None = Field(
        None, max_length=2048,
        description="base URL override: with a path it is used as is; a bare origin keeps the spec server's path")


class McpConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    transport: McpTransport = "http"
    serverUrl: str | None = Field(None, max_length=2048)
    command: str | None = Field(None, max_length=1024)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="stdio environment; values never returned")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers; values never returned")
    mode: Literal["auto", "legacy"] = Field(
        "auto", description="auto: probe the 2026 protocol, fall back to initialize; legacy: initialize only")


class OperationParameter(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    location: ParameterLocation
    required: bool = False
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class OperationRequestBody(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    required: bool = False
    contentType: str = "application/json"
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class Operation(BaseModel):
    """One callable operation: an OpenAPI operation, an MCP tool/resource/prompt, or a
    provider operation. Invoke it as `<integration key>.<id>` (or `<key>.<operationId>`, or a
    path of the namespace tree)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(min_length=1, max_length=512)
    operationId: str | None = None
    method: str | None = None
    path: str | None = None
    summary: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: list[OperationParameter] = Field(default_factory=list)
    requestBody: OperationRequestBody | None = None
    responseSchema: dict[str, Any] | None = None
    mcpTool: dict[str, Any] | None = None
    mcpResource: dict[str, Any] | None = None
    mcpPrompt: dict[str, Any] | None = None


class RegisterRequest(BaseModel):
    """An Integration object. Read-only fields of a registry reply (id, status, operationCount,
    createdBy, ...) are ignored, so a GET → edit → POST round trip works. Registering a key
    that exists in the same scope is an update and needs `version` = the current version."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(pattern=KEY_PATTERN, description="lower-case letters, digits, '-' and '_'; 1-64")
    type: IntegrationType
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)
    openapi: OpenApiConfig | None = None
    mcp: McpConfig | None = None
    auth: AuthConfig | None = None
    operations: list[Operation] | None = Field(None, description="builtin/custom: the operations, as given")
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: Literal["org", "global"] = Field("org", description="global needs the integrations:admin entitlement")
    version: int | None = Field(None, ge=1, description="when updating: the version being replaced")


class McpRegisterRequest(McpConfig):
    """`POST /mcp/register`: the original's flat body `{key, transport, command?, args?, serverUrl?, env?}`,
    or the nested body its OpenAPI document described, `{key, name, mcp: {transport, serverUrl, ...}}`
    (the configuration moves up; in the nested form `transport` defaults to `http`, or `stdio` with
    a `command`). A field given both flat and nested with different values is a 400."""

    @model_validator(mode="before")
    @classmethod
    def _nested_form(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("mcp"), dict):
            return data
        nested, flat = data["mcp"], {k: v for k, v in data.items() if k != "mcp"}
        clashes = sorted(k for k in nested if k in flat and flat[k] != nested[k])
        if clashes:
            raise ValueError(f"{', '.join(clashes)} given both at the top level and in mcp with different values")
        merged = {**flat, **nested}
        if "transport" not in merged:
            merged["transport"] = "stdio" if merged.get("command") and not merged.get("serverUrl") else "http"
        return merged

    key: str = Field(pattern=KEY_PATTERN)
    transport: McpTransport
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)
    auth: AuthConfig | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: Literal["org", "global"] = "org"
    version: int | None = Field(None, ge=1)


class ParseOpenApiRequest(OpenApiConfig):
    model_config = ConfigDict(extra="forbid")


class ParseMcpRequest(McpConfig):
    model_config = ConfigDict(extra="ignore")


class RegistryKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=128)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=128)
    body: dict[str, Any] | None = None


class RegistryListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: IntegrationType | None = None
    scope: Literal["org", "global"] | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(None, max_length=256)
    tag: str | None = Field(None, max_length=256)
    integration: str | None = Field(None, max_length=128)
    limit: int = Field(200, ge=1, le=5000)


class NamespaceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- replies ---------------------------------------------------------------------------------


class Integration(BaseModel):
    """An Integration as returned by the registry (secrets redacted)."""

    model_config = ConfigDict(extra="allow")

    id: str
    key: str
    name: str
    description: str | None = None
    type: IntegrationType
    scope: Literal["org", "global"]
    org: str | None = Field(None, description="the owning org; null for global entries")
    builtin: bool = False
    openapi: dict[str, Any] | None = None
    mcp: dict[str, Any] | None = None
    auth: AuthConfig | None = None
    operations: list[Operation] = Field(default_factory=list)
    namespace: dict[str, Any] = Field(default_factory=dict)
    operationCount: int = 0
    status: str = "active"
    lastSyncedAt: str | None = None
    version: int = 1
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    createdBy: str | None = None
    createdAt: str | None = None
    updatedBy: str | None = None
    updatedAt: str | None = None


class RegisterReply(BaseModel):
    success: Literal[True] = True
    integration: Integration
    operationCount: int
    created: bool = Field(description="false when an existing entry was updated")
    capabilities: dict[str, Any] | None = Field(None, description="MCP servers: what the server offers")


class IntegrationListReply(BaseModel):
    integrations: list[Integration]


class IntegrationReply(BaseModel):
    integration: Integration


class OperationsReply(BaseModel):
    operations: list[Operation]


class NamespaceReply(BaseModel):
    integrations: dict[str, Any]


class SearchResult(BaseModel):
    integrationKey: str
    integration: str = Field(description="same as integrationKey (the control center reads this name)")
    operation: Operation


class SearchReply(BaseModel):
    results: list[SearchResult]


class DeleteReply(BaseModel):
    success: Literal[True] = True
    key: str
    version: int


class ParseOpenApiReply(BaseModel):
    success: Literal[True] = True
    operations: list[Operation]
    namespace: dict[str, Any]
    serverUrl: str | None
    info: dict[str, Any]
    authType: AuthType
    auth: AuthConfig
    specVersion: str


class ParseMcpReply(BaseModel):
    success: Literal[True] = True
    operations: list[Operation]
    namespace: dict[str, Any]
    capabilities: dict[str, Any]


class RegistryEvent(BaseModel):
    """Published on `integrations.v1.events.registry.<org>.<key>` (org `_global` for global entries)."""

    action: Literal["registered", "updated", "refreshed", "deleted"]
    key: str
    org: str | None
    scope: Literal["org", "global"]
    type: IntegrationType
    version: int
    operationCount: int
    principal: str | None
    at: str


_P = f"{API_PREFIX}"
_READ_ERRORS = (400, 401, 403, 404, 500, 503, 504)
_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 500, 502, 503, 504)

ROUTES = (
    Route("POST", f"{_P}/register", subjects.REGISTRY_REGISTER,
          "Register (or update) an OpenAPI service, MCP server or custom integration", "registry",
          request_model=RegisterRequest, response_model=RegisterReply, error_statuses=_WRITE_ERRORS,
          description="Org-scoped unless scope is global (admin). Updating an existing key needs its current "
                      "`version`; built-in keys are read-only. Spec and server URLs pass the outbound guard."),
    Route("POST", f"{_P}/mcp/register", subjects.REGISTRY_MCP_REGISTER,
          "Register an external MCP server (flat body as the original, or nested under mcp)", "registry",
          request_model=McpRegisterRequest, response_model=RegisterReply, error_statuses=_WRITE_ERRORS,
          description="stdio servers only when the command is in INTEGRATIONS_MCP_STDIO_ALLOW."),
    Route("GET", f"{_P}/registry", subjects.REGISTRY_LIST, "List the integrations visible to the caller's org",
          "registry", request_model=RegistryListRequest, response_model=IntegrationListReply,
          query=(QueryParam("type", "openapi | mcp | builtin | custom"), QueryParam("scope", "org | global")),
          error_statuses=_READ_ERRORS),
    Route("GET", f"{_P}/registry/{{key}}", subjects.REGISTRY_GET, "One integration", "registry",
          request_model=RegistryKeyRequest, response_model=IntegrationReply, error_statuses=_READ_ERRORS),
    Route("GET", f"{_P}/registry/{{key}}/operations", subjects.REGISTRY_OPERATIONS, "Operations of an integration",
          "registry", request_model=RegistryKeyRequest, response_model=OperationsReply, error_statuses=_READ_ERRORS),
    Route("POST", f"{_P}/registry/{{key}}/refresh", subjects.REGISTRY_REFRESH,
          "Re-discover an integration's operations (spec URL or MCP server); bumps its version", "registry",
          request_model=RefreshRequest, response_model=RegisterReply, error_statuses=_WRITE_ERRORS,
          description="Bus request: `{key, body}`. Owner or admin; built-ins: admin."),
    Route("DELETE", f"{_P}/registry/{{key}}", subjects.REGISTRY_DELETE, "Remove an integration (owner or admin)",
          "registry", request_model=RegistryKeyRequest, response_model=DeleteReply, error_statuses=_WRITE_ERRORS),
    Route("GET", f"{_P}/namespace", subjects.REGISTRY_NAMESPACE, "Namespace tree of every visible integration",
          "registry", request_model=NamespaceRequest, response_model=NamespaceReply, error_statuses=_READ_ERRORS),
    Route("GET", f"{_P}/operations/search", subjects.REGISTRY_SEARCH, "Search operations by text or tag", "registry",
          request_model=SearchRequest, response_model=SearchReply, error_statuses=_READ_ERRORS,
          query=(QueryParam("q", "case-insensitive text in id, summary, description or tags"),
                 QueryParam("tag", "exact tag (wins over q)"), QueryParam("integration", "only this key"),
                 QueryParam("limit", "at most this many results (200)", "integer"))),
    Route("POST", f"{_P}/parse/openapi", subjects.REGISTRY_PARSE_OPENAPI,
          "Preview how an OpenAPI/Swagger document parses (nothing is stored)", "registry",
          request_model=ParseOpenApiRequest, response_model=ParseOpenApiReply, error_statuses=_WRITE_ERRORS),
    Route("POST", f"{_P}/parse/mcp", subjects.REGISTRY_PARSE_MCP,
          "Preview what an MCP server offers (nothing is stored)", "registry",
          request_model=ParseMcpRequest, response_model=ParseMcpReply, error_statuses=_WRITE_ERRORS),
)
