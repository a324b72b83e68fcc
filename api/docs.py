"""OpenAPI document and llms.txt, generated from the one route table (contracts.routes) plus
the adapter's own routes, so documentation always describes the routes that exist."""

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts.envelope import ErrorEnvelope
from contracts.health import HealthStatus
from contracts.mcp import ENDPOINT_PATH, PROTOCOL_VERSIONS
from contracts.openai import OpenAIError
from contracts.routes import ROUTES, Route
from contracts.streaming import StreamDelta

TITLE = "Symbia Integrations"
DESCRIPTION = (
    "Gateway from a Symbia network to LLM providers, OpenAPI services and MCP servers. Every route is also "
    "served under /api/api/... (the path the original's generated docs used). Errors use one envelope "
    "(ErrorEnvelope). Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`; pick the "
    "organization with `X-Org-Id`. Give a deadline with `X-Timeout-Ms` (docs/RESILIENCE.md)."
)

# Every bus route takes the caller's deadline (docs/RESILIENCE.md §6).
TIMEOUT_HEADER = {"name": "X-Timeout-Ms", "in": "header", "required": False,
                  "description": "the caller's budget in milliseconds; the gateway answers 504 deadline_exceeded "
                                 "rather than take longer", "schema": {"type": "integer", "minimum": 1}}

# The adapter's own routes (not on the bus): path → (summary, response model).
LOCAL_ROUTES: dict[str, tuple[str, type[BaseModel] | None]] = {
    "/health": ("Liveness of the HTTP adapter", HealthStatus),
    "/health/live": ("Liveness of the HTTP adapter", HealthStatus),
    "/health/ready": ("Ready: connected to the bus and a worker answered a ping", HealthStatus),
    "/openapi.json": ("This document", None),
    "/docs/openapi.json": ("This document", None),
    "/llms.txt": ("Route index for language models", None),
    "/docs/llms-full.txt": ("Routes with their schemas, for language models", None),
}


MCP_SUMMARY = (f"MCP server (Streamable HTTP, JSON-RPC 2.0; protocol revisions {', '.join(PROTOCOL_VERSIONS)}): "
               "the caller's integrations as tools")


def _mcp_endpoint() -> dict[str, Any]:
    """The MCP endpoint is served by the SDK in the adapter, not by a bus route (docs/MCP.md)."""
    errors = {str(status): {"description": "Error envelope (before the MCP session starts)",
                            "content": _json_content(ErrorEnvelope)} for status in (401, 403, 421, 503)}
    security = [{"apiKey": []}, {"bearer": []}]
    message = {"application/json": {"schema": {"type": "object", "required": ["jsonrpc"],
                                               "description": "One JSON-RPC request or notification"}}}
    return {
        "post": {"summary": MCP_SUMMARY, "tags": ["mcp"], "operationId": "post_api_integrations_mcp",
                 "description": "Send `Accept: application/json, text/event-stream`. Requests are answered with "
                                "JSON or an SSE stream; notifications with 202 and no body. 2025 revisions: "
                                "initialize, then `Mcp-Session-Id` and `MCP-Protocol-Version` on every request; "
                                "2026-07-28: stateless, `server/discover`.", "security": security,
                 "requestBody": {"required": True, "content": message},
                 "responses": {"200": {"description": "JSON-RPC response (application/json or text/event-stream)"},
                               "202": {"description": "Notification accepted"}, **errors}},
        "get": {"summary": "MCP standalone SSE stream of a 2025 session (list_changed notifications)", "tags": ["mcp"],
                "operationId": "get_api_integrations_mcp", "security": security,
                "responses": {"200": {"description": "text/event-stream"}, **errors}},
        "delete": {"summary": "End a 2025 MCP session", "tags": ["mcp"], "operationId": "delete_api_integrations_mcp",
                   "security": security, "responses": {"200": {"description": "Session ended"}, **errors}},
    }


def _schemas(routes: tuple[Route, ...]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], str]] = [(ErrorEnvelope, "serialization"), (HealthStatus, "serialization"),
                                                 (OpenAIError, "serialization"), (StreamDelta, "serialization")]
    for route in routes:
        if route.request_model:
            models.append((route.request_model, "validation"))
        if route.response_model:
            models.append((route.response_model, "serialization"))
    _, schema = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return schema.get("$defs", {})


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_content(model: type[BaseModel] | None) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model) if model else {"type": "object"}}}


def openapi_path(path: str) -> str:
    """A route path as OpenAPI writes it: Starlette's converters (`{model:path}`) dropped."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _operation(route: Route, path: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "description": f"{route.description}\n\nBus subject: `{route.subject}`.".strip(),
        "tags": [route.tag],
        "operationId": f"{route.method.lower()}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "responses": {str(route.success_status): {"description": "Success",
                                                  "content": _json_content(route.response_model)}},
    }
    if route.stream is not None:
        op["responses"]["200"]["content"]["text/event-stream"] = {
            "schema": {"type": "string", "description": "with `\"stream\": true`: server-sent events "
                       "(docs/STREAMING.md)" + (", data: StreamDelta" if route.stream.dialect.name == "execute" else
                                                 ", data: chat.completion.chunk, then [DONE]")}}
    error_model = OpenAIError if route.error_format == "openai" else ErrorEnvelope
    for status in route.error_statuses:
        op["responses"][str(status)] = {"description": "Error", "content": _json_content(error_model)}
    if route.auth:
        op["security"] = [{"apiKey": []}, {"bearer": []}]
    params = [{"name": p.name, "in": "query", "required": False, "description": p.description,
               "schema": {"type": p.type}} for p in route.query]
    params += [{"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
               for seg in path.split("/") if seg.startswith("{")]
    params.append(TIMEOUT_HEADER)
    op["parameters"] = params
    if route.request_model and route.method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {"required": True, "content": _json_content(route.request_model)}
    return op


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        path = openapi_path(route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, path)
    paths[ENDPOINT_PATH] = _mcp_endpoint()
    for path, (summary, model) in LOCAL_ROUTES.items():
        content = _json_content(model) if model else {"application/json": {"schema": {"type": "object"}}}
        paths[path] = {"get": {"summary": summary, "tags": ["meta"], "operationId": "get_" + path.strip("/")
                               .replace("/", "_").replace(".", "_").replace("-", "_"),
                               "responses": {"200": {"description": "OK", "content": content}}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "1.0.0", "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": _schemas(ROUTES),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def llms_txt(full: bool) -> str:
    lines = [f"# {TITLE}", "", f"> {DESCRIPTION}", "", "## Routes", ""]
    for route in ROUTES:
        auth = "auth" if route.auth else "no auth"
        path = openapi_path(route.path)
        lines.append(f"- {route.method} {path} ({auth}; bus subject `{route.subject}`): {route.summary}")
        if full:
            if route.description:
                lines.append(f"  {route.description}")
            if route.request_model:
                lines.append(f"  Request body: {route.request_model.__name__} (see /openapi.json)")
            for param in route.query:
                lines.append(f"  Query `{param.name}`: {param.description}")
    lines.append(f"- POST|GET|DELETE {ENDPOINT_PATH} (auth): {MCP_SUMMARY}")
    lines += ["", "## Meta", ""]
    lines += [f"- GET {path}: {summary}" for path, (summary, _) in LOCAL_ROUTES.items()]
    if full:
        lines += ["", "## Errors", "",
                  "Every error is `{success: false, error, category, errorCategory, retryable, reason?, provider?, "
                  "operation?, upstream?: {statusCode, code}, requestId, durationMs}`."]
    return "\n".join(lines) + "\n"
