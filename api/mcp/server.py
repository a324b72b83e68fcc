"""The SDK's low-level MCP server, with handlers that are bus requests to the workers.

* `tools/list` → `integrations.v1.mcp.tools.list {cursor}`; an invalid cursor is -32602.
* `tools/call` → `integrations.v1.mcp.tools.call {name, arguments}` with a fresh request id.
  The worker's reply is the CallToolResult; a failure of the gateway (invalid arguments, missing
  credential, upstream timeout, no worker...) comes back as the error envelope and becomes a
  result with `isError: true` whose text the model can act on; an unknown tool is -32602.
  While the call runs, a client that sent a progress token gets `notifications/progress` every
  INTEGRATIONS_MCP_PROGRESS_S. When the SDK cancels the handler (`notifications/cancelled` on the
  2025 protocol, the client closing the response stream on 2026) the api publishes
  `integrations.v1.mcp.cancel` so the worker stops the upstream call too.
* `server/discover`, `initialize`, `ping`, the transport rules: the SDK's own.

Results are returned as plain dicts (the SDK validates and trims them per protocol revision);
2026 results get `resultType` and, for lists, `ttlMs: 0` and `cacheScope: "private"` (the list
depends on the caller, and list changes are pushed only to listening clients).
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import orjson
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolRequestParams, PaginatedRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from api.bus import BusClient, BusError, BusReply
from api.mcp.notify import ListChangedNotifier
from api.settings import ApiSettings
from contracts import headers as h
from contracts import subjects
from contracts.envelope import Reason
from contracts.mcp import SERVER_NAME

CALLER_STATE = "mcp_caller"
INSTRUCTIONS = (
    "Tools of the Symbia Integrations gateway: LLM providers, registered OpenAPI services and MCP servers. "
    "A tool is named <integration>_<operation>; its _meta names the integration and operation it runs."
)
_PROTOCOL_ERRORS = frozenset({Reason.TOOL_NOT_FOUND, Reason.INVALID_CURSOR})
_BUS_MESSAGES = {
    "no_workers": "No integrations worker is running; retry shortly",
    "worker_lost": "The worker handling the call stopped responding; it may or may not have run",
    "timeout": "The call took longer than the gateway allows",
    "unavailable": "The gateway's message bus is unavailable; retry shortly",
}


def _version() -> str:
    try:
        return version("symbia-integrations")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, slots=True)
class EndpointCaller:
    """Who an endpoint request authenticated as (set on the ASGI scope before the SDK runs)."""

    principal: str
    principal_type: str
    org: str


def caller_of(ctx: ServerRequestContext[Any, Any]) -> EndpointCaller:
    request = ctx.request
    caller = request.scope.get("state", {}).get(CALLER_STATE) if isinstance(request, Request) else None
    if caller is None:   # every request passes McpEndpoint's authentication first
        raise MCPError(INTERNAL_ERROR, "Unauthenticated request")
    return caller


class GatewayServer(Server):
    """The low-level server, advertising `tools.listChanged` on the 2025 protocol when sessions
    exist to carry the notification (the 2026 flag follows from `subscriptions/listen`)."""

    def __init__(self, *args: Any, list_changed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._list_changed = list_changed

    def create_initialization_options(self, notification_options=None, experimental_capabilities=None,
                                      extensions=None):
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=self._list_changed),
            experimental_capabilities, extensions)


def _modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _envelope(reply: BusReply) -> dict[str, Any]:
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        body = None
    return body if isinstance(body, dict) else {"error": f"The gateway answered HTTP {reply.status}"}


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _explained(envelope: dict[str, Any]) -> str:
    details = [f"{k}: {envelope[k]}" for k in ("reason", "category", "retryable") if envelope.get(k) is not None]
    upstream = envelope.get("upstream") or {}
    if upstream.get("statusCode"):
        details.append(f"upstream status: {upstream['statusCode']}")
    return f"{envelope.get('error') or 'The call failed'}" + (f" ({', '.join(details)})" if details else "")


class McpGateway:
    def __init__(self, bus: BusClient, settings: ApiSettings, headers_of: Callable[[Request], dict[str, str]]) -> None:
        self._bus = bus
        self._settings = settings
        self._headers_of = headers_of
        self.notifier = ListChangedNotifier(lambda ctx: caller_of(ctx).org)
        self.server = GatewayServer(
            SERVER_NAME, version=_version(), title="Symbia Integrations", instructions=INSTRUCTIONS,
            list_changed=not settings.mcp_stateless,
            on_list_tools=self.list_tools, on_call_tool=self.call_tool,
            on_subscriptions_listen=self.notifier.listen,
            # Mcp-Param-* header checks (2026): our schemas declare no x-mcp-header, so there is
            # nothing to check, and the SDK would otherwise page through tools/list on every call.
            get_tool_input_schema=lambda _name: None)
        self.server.middleware.append(self._track_sessions)

    async def _track_sessions(self, ctx: ServerRequestContext[Any, Any], call_next):
        connection = getattr(ctx.session, "_connection", None)   # the SDK exposes no public accessor
        if connection is not None and connection.session_id and not _modern(ctx):
            request = ctx.request
            caller = request.scope.get("state", {}).get(CALLER_STATE) if isinstance(request, Request) else None
            if caller is not None:
                self.notifier.track(connection, caller.org)
        return await call_next(ctx)

    def _bus_headers(self, ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
        caller_of(ctx)
        return self._headers_of(ctx.request)

    # --- tools/list ------------------------------------------------------------------------------

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: PaginatedRequestParams | None) -> dict[str, Any]:
        body = orjson.dumps({"cursor": params.cursor if params else None})
        try:
            reply = await self._bus.request(subjects.MCP_TOOLS_LIST, body, self._bus_headers(ctx),
                                            self._settings.request_timeout_s)
        except BusError as exc:
            raise MCPError(INTERNAL_ERROR, _BUS_MESSAGES[exc.kind]) from None
        if reply.status != 200:
            envelope = _envelope(reply)
            code = INVALID_PARAMS if envelope.get("reason") in _PROTOCOL_ERRORS else INTERNAL_ERROR
            raise MCPError(code, str(envelope.get("error") or "tools/list failed"))
        result = orjson.loads(reply.body)
        if _modern(ctx):
            result.update(resultType="complete", ttlMs=0, cacheScope="private")
        return result

    # --- tools/call ------------------------------------------------------------------------------

    async def call_tool(self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> dict[str, Any]:
        request_id = f"mcp_{uuid.uuid4().hex[:20]}"
        headers = {**self._bus_headers(ctx), h.REQUEST_ID: request_id}
        body = orjson.dumps({"name": params.name, "arguments": params.arguments})
        ticker = asyncio.create_task(self._progress(ctx, params.name)) if _progress_token(ctx) is not None else None
        try:
            reply = await self._bus.request(subjects.MCP_TOOLS_CALL, body, dict(headers),
                                            self._settings.request_timeout_s)
        except BusError as exc:
            return self._result(ctx, _error_result(_BUS_MESSAGES[exc.kind]))
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):   # tell the worker to stop the upstream call as well
                await self._bus.publish(subjects.MCP_CANCEL, orjson.dumps({"requestId": request_id}), headers)
            raise
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        if reply.status == 200:
            return self._result(ctx, orjson.loads(reply.body))
        envelope = _envelope(reply)
        if envelope.get("reason") in _PROTOCOL_ERRORS:
            raise MCPError(INVALID_PARAMS, str(envelope.get("error")))
        return self._result(ctx, _error_result(_explained(envelope)))

    @staticmethod
    def _result(ctx: ServerRequestContext[Any, Any], result: dict[str, Any]) -> dict[str, Any]:
        if _modern(ctx):
            result["resultType"] = "complete"
        return result

    async def _progress(self, ctx: ServerRequestContext[Any, Any], name: str) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.mcp_progress_s)
            elapsed = time.monotonic() - started
            with contextlib.suppress(Exception):   # a closed stream must not fail the call
                await ctx.session.report_progress(round(elapsed, 1), None, f"{name}: running for {int(elapsed)} s")


def _progress_token(ctx: ServerRequestContext[Any, Any]) -> Any:
    meta = (ctx.params or {}).get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return None if isinstance(token, bool) else token
