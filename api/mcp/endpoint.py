"""The ASGI endpoint at `/api/integrations/mcp` (and `/api/api/integrations/mcp`), exact path,
methods POST, GET (the 2025 standalone stream) and DELETE (end a 2025 session).

Every HTTP request, before the SDK sees it:
1. Origin: present and not allowed → 403 (the spec's MUST, against DNS rebinding); Host, when
   INTEGRATIONS_MCP_ALLOWED_HOSTS is set: not listed → 421; a body above
   INTEGRATIONS_MAX_BODY_BYTES (declared, or counted while read when chunked) → 413. The
   body read here is handed to the SDK as is.
2. Caller: one `integrations.v1.mcp.authenticate` request with the identity headers, exactly as
   every REST route authenticates (X-API-Key, Bearer, cookie, X-Org-Id). A failure is the HTTP
   status and error envelope of the REST routes (401 with `WWW-Authenticate: Bearer`, 403, 400),
   never a JSON-RPC body: the MCP session does not start.
3. The SDK's session manager serves the request: the 2026 protocol statelessly (per-request
   `_meta`, `server/discover`), the 2025 protocols with the initialize handshake and, unless
   INTEGRATIONS_MCP_STATELESS, an `Mcp-Session-Id` session bound to the principal and org that
   opened it (another caller presenting the id gets 404).
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from api.body import BodyTooLarge, read_body
from api.bus import BusClient, BusError
from api.mcp.server import CALLER_STATE, EndpointCaller, McpGateway
from api.responses import JSON, envelope_response, request_id_of
from api.settings import ApiSettings
from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from contracts.mcp import SERVER_NAME, McpCaller

_AUTH_TIMEOUT_S = 30.0


def matches(value: str, patterns: list[str]) -> bool:
    """Exact match, or `<prefix>:*` for any port (the SDK's rule)."""
    for pattern in patterns:
        if value == pattern or pattern == "*":
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]) and value[len(pattern) - 1:].isdigit():
            return True
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message, then the client's own messages (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()
    return replayed


class McpEndpoint:
    def __init__(self, bus: BusClient, settings: ApiSettings, headers_of: Callable[[Request], dict[str, str]],
                 bus_errors: dict) -> None:
        self._bus = bus
        self._settings = settings
        self._headers_of = headers_of
        self._bus_errors = bus_errors
        self._origins = settings.mcp_origin_list
        self._hosts = settings.mcp_host_list
        self.gateway = McpGateway(bus, settings, headers_of)
        self.manager = StreamableHTTPSessionManager(
            app=self.gateway.server,
            json_response=False,          # SSE when a call streams progress; plain JSON otherwise (2026)
            stateless=settings.mcp_stateless,
            # Host and Origin are checked here, before authentication; the SDK keeps its other checks.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=settings.mcp_session_idle_s,
            max_request_body_size=settings.max_body_bytes,
            max_sessions=settings.mcp_max_sessions,
        )

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Enter from the host app's lifespan (a mounted app's own lifespan never runs). The SDK's
        session manager holds an anyio task group, which must be left by the task that entered it;
        a host may enter and leave its lifespan from different tasks, so a runner task owns it."""
        started, stopping = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await stopping.wait()
                self.gateway.notifier.close()

        runner = asyncio.create_task(run(), name="mcp-session-manager")
        ready = asyncio.ensure_future(started.wait())
        await asyncio.wait((runner, ready), return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            ready.cancel()
            runner.result()    # start-up failed: raise it
        await self._bus.subscribe(f"{subjects.EVENTS_REGISTRY}.>", self.gateway.notifier.on_registry_event)
        try:
            yield
        finally:
            stopping.set()
            await runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = self._check_origin(request)
        body = b""
        if response is None:
            try:  # counted while read: a chunked body declares no length
                body = await read_body(request, self._settings.max_body_bytes)
            except BodyTooLarge:
                response = envelope_response(413, "Request body too large. Maximum size is "
                                             f"{self._settings.max_body_bytes} bytes", ErrorCategory.validation,
                                             reason=Reason.BODY_TOO_LARGE, request_id=request_id_of(request))
        if response is None:
            caller, response = await self._authenticate(request)
        if response is not None:
            await response(scope, receive, send)
            return
        # The SDK binds a 2025 session to the identity that opened it: principal and org.
        scope["user"] = AuthenticatedUser(AccessToken(token="-", client_id=caller.principal, scopes=[],
                                                      subject=caller.org))
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.manager.handle_request(scope, _replay(body, receive), send)

    def _check_origin(self, request: Request) -> Response | None:
        origin = request.headers.get("origin")
        if origin and not matches(origin, self._origins):
            return envelope_response(403, f"Origin not allowed: {origin[:200]}. Add it to "
                                     "INTEGRATIONS_MCP_ALLOWED_ORIGINS", ErrorCategory.auth,
                                     reason=Reason.ORIGIN_NOT_ALLOWED, request_id=request_id_of(request))
        host = request.headers.get("host", "")
        if self._hosts and not matches(host, self._hosts):
            return envelope_response(421, f"Host not allowed: {host[:200]}. Add it to INTEGRATIONS_MCP_ALLOWED_HOSTS",
                                     ErrorCategory.validation, reason=Reason.HOST_NOT_ALLOWED,
                                     request_id=request_id_of(request))
        return None

    async def _authenticate(self, request: Request) -> tuple[EndpointCaller | None, Response | None]:
        try:
            reply = await self._bus.request(subjects.MCP_AUTHENTICATE, b"{}", self._headers_of(request),
                                            min(self._settings.request_timeout_s, _AUTH_TIMEOUT_S))
        except BusError as exc:
            status, category, reason, message = self._bus_errors[exc.kind]
            return None, envelope_response(status, message, category, reason=reason, retryable=True,
                                           request_id=request_id_of(request))
        if reply.status != 200:
            headers = {"WWW-Authenticate": f'Bearer realm="{SERVER_NAME}"'} if reply.status == 401 else None
            return None, Response(reply.body, status_code=reply.status, media_type=JSON, headers=headers)
        caller = McpCaller.model_validate(orjson.loads(reply.body))
        return EndpointCaller(caller.principal.id, caller.principal.type, caller.org), None
