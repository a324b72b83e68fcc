"""Connections to registered MCP servers through the official SDK client (`mcp.Client`, which
speaks both protocol eras: it probes the stateless 2026 protocol and falls back to the
`initialize` handshake).

* One pooled connection per (registry entry version, org, credential), opened on first use and
  closed after INTEGRATIONS_MCP_IDLE_S without calls or when the entry changes. Callers that
  hold different credentials never share an upstream session.
* The SDK's anyio task groups must be entered and left by the same task, so each connection is
  owned by a runner task; calls from handler tasks go through its session.
* A legacy server that forgot the session answers 404: the connection is dropped, a new
  session established and the call sent once more (the server never ran it). A connection
  that died (server restarted, network) is re-opened the same way.
* HTTP goes through an httpx2 client whose network backend is the outbound guard's, with no
  redirects beyond the SDK's own same-origin rule and no platform headers; stdio servers start
  only when their command is allow-listed, with the SDK's minimal environment plus `env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shlex
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpcore2
import httpx2
from pydantic import ValidationError

from contracts.envelope import ErrorCategory, Reason
from service import __version__
from service.errors import GatewayError
from service.mcp.operations import operations_from_listing
from service.outbound import GuardedNetworkBackend, OutboundDenied, OutboundGuard, denied

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger("symbia.integrations.mcp")

T = TypeVar("T")
# JSON-RPC codes of the SDK (mcp_types): a connection the SDK saw close, a request that timed out.
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001


def _mcp_error_type() -> type[Exception]:
    # The SDK costs ~0.7 s to import: workers that never talk to an MCP server do not pay it.
    from mcp import MCPError

    return MCPError
_MAX_PAGES = 100
HTTP_TRANSPORTS = ("http", "streamable-http", "streamableHttp", "websocket")


@dataclass(frozen=True, slots=True)
class McpTarget:
    """Where and how to connect; `headers` include the credential (never logged)."""

    transport: str
    server_url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    mode: str = "auto"

    def fingerprint(self) -> str:
        """Identifies the connection's identity upstream without keeping the secret in a key."""
        raw = repr((self.transport, self.server_url, self.command, self.args, self.env, self.headers, self.mode))
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def stdio_allowed(allow: tuple[str, ...], command: str | None, args: tuple[str, ...] | list[str]) -> bool:
    """An allow-list entry is a command (any arguments) or a full command line (exactly those)."""
    if not command:
        return False
    line = shlex.join([command, *args])
    return any(entry == command or entry == line for entry in allow)


def stdio_refused(command: str | None) -> GatewayError:
    return GatewayError(
        f"stdio MCP servers run a command on the gateway's host; '{command}' is not in INTEGRATIONS_MCP_STDIO_ALLOW",
        ErrorCategory.auth, status=403, reason=Reason.STDIO_NOT_ALLOWED)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out += _leaves(inner)
        return out
    chain, seen = [exc], 0
    while (exc := exc.__cause__ or exc.__context__) is not None and seen < 6:
        chain.append(exc)
        seen += 1
    return chain


def mcp_error(exc: BaseException, name: str, operation: str | None, last_status: int | None = None) -> GatewayError:
    """What went wrong talking to an MCP server, in the gateway's categories."""
    if isinstance(exc, GatewayError):
        return exc
    leaves = _leaves(exc)
    if any(isinstance(e, OutboundDenied) for e in leaves):
        return denied(f"Refused to connect to MCP server {name}: its host resolves to a non-public address; "
                      "list the host in INTEGRATIONS_OUTBOUND_ALLOW to allow it")
    first = leaves[0] if leaves else exc
    kw = {"provider": name, "operation": operation}
    mcp_error_type = _mcp_error_type()
    for e in leaves:
        if isinstance(e, httpx2.HTTPStatusError):
            status = e.response.status_code
            return GatewayError(f"MCP server {name} answered HTTP {status}", ErrorCategory.provider,
                                reason=Reason.UPSTREAM_ERROR, upstream_status=status, **kw)
    if isinstance(first, mcp_error_type):
        if first.code == REQUEST_TIMEOUT:
            return GatewayError(f"MCP server {name} did not answer in time", ErrorCategory.timeout,
                                reason=Reason.UPSTREAM_TIMEOUT, **kw)
        if first.code == CONNECTION_CLOSED:
            return GatewayError(f"Connection to MCP server {name} closed", ErrorCategory.network,
                                reason=Reason.UPSTREAM_UNREACHABLE, **kw)
        status = last_status if last_status and last_status >= 400 else None
        return GatewayError(f"MCP server {name} returned an error: {first.error.message[:500]}",
                            ErrorCategory.provider, reason=Reason.UPSTREAM_ERROR, upstream_code=str(first.code),
                            upstream_status=status, **kw)
    if any(isinstance(e, TimeoutError | httpx2.TimeoutException | httpcore2.TimeoutException) for e in leaves):
        return GatewayError(f"MCP server {name} did not answer in time", ErrorCategory.timeout,
                            reason=Reason.UPSTREAM_TIMEOUT, **kw)
    if any(isinstance(e, ValidationError) for e in leaves):
        return GatewayError(f"MCP server {name} sent a message that does not follow the protocol",
                            ErrorCategory.provider, reason=Reason.UPSTREAM_INVALID_RESPONSE, **kw)
    if any(isinstance(e, httpx2.TransportError | httpcore2.NetworkError | OSError) for e in leaves):
        return GatewayError(f"Cannot connect to MCP server {name}", ErrorCategory.network,
                            reason=Reason.UPSTREAM_UNREACHABLE, **kw)
    return GatewayError(f"MCP server {name} failed: {type(first).__name__}", ErrorCategory.provider,
                        reason=Reason.UPSTREAM_ERROR, **kw)


class McpConnection:
    """One open SDK client, owned by its runner task."""

    def __init__(self, target: McpTarget, guard: OutboundGuard, timeout_s: float, name: str) -> None:
        self.target = target
        self.name = name
        self._guard = guard
        self._timeout_s = timeout_s
        self.client: Client | None = None
        self.last_used = time.monotonic()
        self.session_lost = False
        self.last_status: int | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task | None = None

    @property
    def alive(self) -> bool:
        return self.client is not None and self._task is not None and not self._task.done()

    async def open(self) -> McpConnection:
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), self._timeout_s + 5)
        except TimeoutError:
            await self.close()
            raise GatewayError(f"MCP server {self.name} did not complete the handshake in time", ErrorCategory.timeout,
                               reason=Reason.UPSTREAM_TIMEOUT, provider=self.name) from None
        if self.client is None:
            await self.close()
            raise mcp_error(self._error or RuntimeError("connection failed"), self.name, None, self.last_status)
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                pass

    async def _on_response(self, response: httpx2.Response) -> None:
        self.last_status = response.status_code
        if response.status_code == 404 and "mcp-session-id" in response.request.headers:
            self.session_lost = True

    def _http_client(self, headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                     auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
        transport = httpx2.AsyncHTTPTransport(trust_env=False)
        # The pool's network backend is where httpx2 resolves and connects: the guard's.
        transport._pool._network_backend = GuardedNetworkBackend(self._guard)  # private: httpx2 has no public hook
        return httpx2.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, auth=auth,
            headers={**dict(self.target.headers), **(headers or {})},
            timeout=timeout or httpx2.Timeout(self._timeout_s, read=max(self._timeout_s, 300.0)),
            event_hooks={"response": [self._on_response]},
        )

    async def _run(self) -> None:
        from mcp import Client, StdioServerParameters
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp_types import Implementation

        target = self.target
        try:
            async with AsyncExitStack() as stack:
                if target.transport == "stdio":
                    server: Any = StdioServerParameters(command=target.command or "", args=list(target.args),
                                                        env=dict(target.env) or None)
                elif target.transport == "sse":
                    server = sse_client(target.server_url or "", timeout=self._timeout_s,
                                        httpx_client_factory=self._http_client)
                else:
                    http = await stack.enter_async_context(self._http_client())
                    server = streamable_http_client(target.server_url or "", http_client=http)
                client = Client(server, mode=target.mode, read_timeout_seconds=self._timeout_s,
                                client_info=Implementation(name="symbia-integrations", version=__version__),
                                cache=None)
                await stack.enter_async_context(client)
                self.client = client
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:  # the runner reports, never raises
            if self.client is None:
                self._error = exc
            elif not isinstance(exc, asyncio.CancelledError):
                log.debug("MCP connection %s ended: %r", self.name, exc)
        finally:
            self.client = None
            self._ready.set()


class McpPool:
    def __init__(self, guard: OutboundGuard, timeout_s: float, idle_s: float, stdio_allow: tuple[str, ...]) -> None:
        self.guard = guard
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.stdio_allow = stdio_allow
        self._connections: dict[tuple[str, ...], McpConnection] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._sweeper: asyncio.Task | None = None

    def check_target(self, target: McpTarget) -> None:
        """Registration-time and connect-time policy: stdio allow-list, URL guard."""
        if target.transport == "stdio":
            if not stdio_allowed(self.stdio_allow, target.command, target.args):
                raise stdio_refused(target.command)
            return
        if not target.server_url:
            raise GatewayError("An HTTP MCP server needs serverUrl", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)
        self.guard.check_url(target.server_url, "MCP server URL")

    @contextlib.asynccontextmanager
    async def session(self, target: McpTarget, name: str):
        """A one-off connection (discovery), closed afterwards."""
        self.check_target(target)
        connection = await McpConnection(target, self.guard, self.timeout_s, name).open()
        try:
            yield connection
        finally:
            await connection.close()

    async def call(self, pool_key: tuple[str, ...], target: McpTarget, name: str, operation: str,
                   fn: Callable[[Client], Awaitable[T]]) -> T:
        """Run `fn` on the pooled connection; re-establish it once if the session was lost."""
        self.check_target(target)
        key = (*pool_key, target.fingerprint())
        mcp_error_type = _mcp_error_type()
        for attempt in (1, 2):
            connection = await self._connection(key, target, name)
            connection.last_used = time.monotonic()
            try:
                return await fn(connection.client)
            except mcp_error_type as exc:
                lost = connection.session_lost or exc.code == CONNECTION_CLOSED or not connection.alive
                if attempt == 1 and lost:
                    log.info("MCP server %s lost the session; reconnecting", name)
                    await self._drop(key, connection)
                    continue
                raise mcp_error(exc, name, operation, connection.last_status) from None
            except GatewayError:
                raise
            except Exception as exc:
                if not connection.alive:
                    await self._drop(key, connection)
                raise mcp_error(exc, name, operation, connection.last_status) from None
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, ...], target: McpTarget, name: str) -> McpConnection:
        connection = self._connections.get(key)
        if connection is not None and connection.alive:
            return connection
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one handshake per key, however many callers arrive at once
            connection = self._connections.get(key)
            if connection is not None and connection.alive:
                return connection
            connection = await McpConnection(target, self.guard, self.timeout_s, name).open()
            self._connections[key] = connection
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.create_task(self._sweep())
            return connection

    async def _drop(self, key: tuple[str, ...], connection: McpConnection) -> None:
        if self._connections.get(key) is connection:
            del self._connections[key]
        await connection.close()

    def invalidate(self, entry_key: str) -> None:
        """The registry entry changed or went away: close its connections (in the background)."""
        for key, connection in list(self._connections.items()):
            if key[0] == entry_key:
                del self._connections[key]
                asyncio.get_running_loop().create_task(connection.close())

    async def _sweep(self) -> None:
        while self._connections:
            await asyncio.sleep(min(30.0, self.idle_s / 2))
            idle_before = time.monotonic() - self.idle_s
            for key, connection in list(self._connections.items()):
                if connection.last_used < idle_before or not connection.alive:
                    await self._drop(key, connection)

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(_MAX_PAGES):
        page = await fetch(cursor)
        items += [item.model_dump(by_alias=True, exclude_none=True, mode="json") for item in getattr(page, attr)]
        cursor = page.next_cursor
        if not cursor:
            break
    return items


async def discover(client: Client) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Every tool, resource, resource template and prompt the server offers (all pages)."""
    caps = client.server_capabilities
    tools = await _all_pages(lambda c: client.list_tools(cursor=c), "tools") if caps.tools else []
    resources, templates, prompts = [], [], []
    if caps.resources:
        resources = await _all_pages(lambda c: client.list_resources(cursor=c), "resources")
        with contextlib.suppress(_mcp_error_type()):  # optional for servers
            templates = await _all_pages(lambda c: client.list_resource_templates(cursor=c), "resource_templates")
    if caps.prompts:
        prompts = await _all_pages(lambda c: client.list_prompts(cursor=c), "prompts")
    operations, namespace = operations_from_listing(tools, resources, templates, prompts)
    info = client.server_info
    capabilities = {
        "tools": bool(caps.tools), "resources": bool(caps.resources), "prompts": bool(caps.prompts),
        "protocolVersion": client.protocol_version,
        "serverInfo": info.model_dump(by_alias=True, exclude_none=True, mode="json") if info else None,
    }
    return operations, namespace, capabilities
