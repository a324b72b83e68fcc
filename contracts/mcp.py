"""The MCP server endpoint (docs/MCP.md): what the HTTP adapter and the workers exchange.

The api process speaks MCP (the official SDK's low-level server at `POST /api/integrations/mcp`);
the workers own the tools. Every HTTP request to the endpoint is first authenticated with
`integrations.v1.mcp.authenticate`; `tools/list` is one `integrations.v1.mcp.tools.list` request,
`tools/call` one `integrations.v1.mcp.tools.call` request, with the caller's identity headers as
on every other subject. `integrations.v1.mcp.cancel` (fan-out, no reply) stops a running call.

Replies are MCP wire objects (camelCase) for successes; failures of the gateway are the error
envelope, which the api turns into a JSON-RPC error (`tool_not_found`, `invalid_cursor` →
-32602) or a tool result with `isError: true` (everything else: the model can read it).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.headers import REQUEST_ID_PATTERN
from contracts.http import API_PREFIX, Route

ENDPOINT_PATH = f"{API_PREFIX}/mcp"
SERVER_NAME = "symbia-integrations"
# What the endpoint serves: the initialize handshake for the first four (over Streamable HTTP),
# the stateless protocol (server/discover, per-request _meta) for the last.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
# Tool names fit every LLM provider's function-name rule (OpenAI: ^[a-zA-Z0-9_-]{1,64}$).
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# `_meta` keys of a tool: which registry operation it runs.
META_INTEGRATION = "io.symbia/integration"
META_OPERATION = "io.symbia/operation"


class McpAuthenticateRequest(BaseModel):
    """Any JSON object (usually `{}`): only the identity headers matter."""

    model_config = ConfigDict(extra="ignore")


class McpPrincipal(BaseModel):
    id: str
    type: str


class McpCaller(BaseModel):
    """Reply of `integrations.v1.mcp.authenticate`: who is calling, in which org."""

    principal: McpPrincipal
    org: str


class ToolsListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(None, max_length=1024, description="nextCursor of the previous page; opaque")


class McpTool(BaseModel):
    """An MCP Tool (2025-11-25 shape; the SDK drops what older revisions do not know)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    title: str | None = None
    description: str | None = None
    inputSchema: dict[str, Any]
    outputSchema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = Field(None, alias="_meta",
                                        description=f"{META_INTEGRATION} and {META_OPERATION}")


class ToolsListReply(BaseModel):
    tools: list[McpTool]
    nextCursor: str | None = None


class ToolsCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] | None = None


class ToolResult(BaseModel):
    """An MCP CallToolResult: `content` blocks (text, image, audio, resource), `structuredContent`
    for JSON results, `isError` for failures the model should read (upstream errors, invalid
    arguments are envelopes on the bus and become such results in the api)."""

    model_config = ConfigDict(extra="allow")

    content: list[dict[str, Any]]
    structuredContent: Any = None
    isError: bool = False


class McpCancelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    requestId: str = Field(pattern=REQUEST_ID_PATTERN, description="the x-request-id the tools.call carried")


class McpInfoRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")


class McpServerInfo(BaseModel):
    name: str
    version: str
    protocol: str = Field(description="the newest protocol revision served")
    protocolVersions: list[str]


class McpInfoTool(BaseModel):
    name: str = Field(description="the MCP tool name")
    integration: str
    operation: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)


class McpInfoReply(BaseModel):
    """`GET /mcp/info` (reference §7.2, per caller): `toolCount` is what `tools/list` returns to
    the same caller; `tools` the first 50 of them."""

    server: McpServerInfo
    capabilities: dict[str, bool]
    toolCount: int
    tools: list[McpInfoTool]
    endpoint: str = ENDPOINT_PATH


ROUTES = (
    Route("GET", f"{API_PREFIX}/mcp/info", subjects.MCP_INFO, "MCP server info: protocol versions and the caller's "
          "tools", "mcp", request_model=McpInfoRequest, response_model=McpInfoReply,
          error_statuses=(400, 401, 403, 500, 503, 504),
          description=f"The MCP endpoint itself is `{ENDPOINT_PATH}` (Streamable HTTP; docs/MCP.md)."),
)

# Subjects without an HTTP route of their own (the MCP endpoint speaks them): subject, request
# model, reply model, description. The AsyncAPI document lists them with these schemas.
BUS_ONLY: tuple[tuple[str, type[BaseModel], type[BaseModel] | None, str], ...] = (
    (subjects.MCP_AUTHENTICATE, McpAuthenticateRequest, McpCaller, "Authenticate an MCP endpoint request."),
    (subjects.MCP_TOOLS_LIST, ToolsListRequest, ToolsListReply, "One page of the caller's MCP tools."),
    (subjects.MCP_TOOLS_CALL, ToolsCallRequest, ToolResult, "Call one MCP tool (an operation, through invoke)."),
    (subjects.MCP_CANCEL, McpCancelRequest, None, "Cancel a running tools.call (fan-out, no reply)."),
)
