"""`integrations.v1.invoke` / `POST /api/integrations/invoke`: call one operation of a registered
integration (reference §6.5, fixed; docs/REGISTRY.md).

`operation` is `[integrations.]<key>.<operation id | operationId | namespace path>`.
`params` fill the operation's path, query, header and cookie parameters by their declared
location (undeclared ones go to the query string); `body` is the request body (for provider
built-ins: the execute `params`; for MCP tools: the arguments).

Upstream answers of any HTTP status are replies with HTTP 200: `success` tells whether the
upstream said 2xx (or an MCP tool did not report `isError`), `statusCode` and `data` carry
what it said. Failures of the gateway itself (validation, auth, outbound guard, timeouts,
network) are error envelopes with their own status.
"""

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.http import API_PREFIX, Route


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    operation: str = Field(min_length=1, max_length=512, examples=["integrations.petstore.pets.list"])
    params: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (never auth headers)")
    timeout: int | None = Field(None, gt=0, description="milliseconds; bounded by INTEGRATIONS_INVOKE_MAX_TIMEOUT_S")
    retries: int = Field(0, ge=0, le=10, description="retries on network errors, timeouts, 429/502/503/504; "
                                                     "idempotent methods only")
    credentialId: str | None = Field(None, validation_alias=AliasChoices("credentialId", "credential_id"))


class InvokeReply(BaseModel):
    success: bool
    data: Any = None
    requestId: str
    durationMs: int
    operation: str
    integration: str
    statusCode: int | None = Field(None, description="OpenAPI operations: the upstream HTTP status")
    error: str | None = Field(None, description="when success is false: what the upstream reported")
    type: Literal["llm", "api-call", "mcp-tool", "mcp-resource", "mcp-prompt"] | None = None
    contentType: str | None = None
    encoding: Literal["base64"] | None = Field(None, description="set when data is a base64 binary body")
    attempts: int | None = None


ROUTES = (
    Route(
        method="POST",
        path=f"{API_PREFIX}/invoke",
        subject=subjects.INVOKE,
        summary="Invoke an operation of a registered integration (OpenAPI, MCP or provider built-in)",
        tag="invoke",
        request_model=InvokeRequest,
        response_model=InvokeReply,
        description=("Upstream answers of any status are HTTP 200 with success, statusCode and data; gateway "
                     "failures use the error envelope."),
        error_statuses=(400, 401, 402, 403, 404, 413, 422, 429, 500, 502, 503, 504),
    ),
)
