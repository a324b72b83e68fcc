"""Pooled upstream HTTP: one aiohttp session per upstream family, created on first use in the
worker's event loop and closed at shutdown.

aiohttp rather than plain httpx on this path: measured on this stack it costs a quarter of the
CPU per request (reference/perf-notes.md). Transport failures become GatewayErrors here so
that every caller sees the same `timeout` / `network` categories.

The family OUTBOUND carries requests to user-supplied URLs (registered OpenAPI services,
spec URLs): its sessions resolve names through the outbound guard (service/outbound.py), every
URL and every redirect hop is checked before it is requested, and its requests carry only the
headers the caller of `fetch` builds (no trace or caller ids of the platform).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from contracts.envelope import ErrorCategory, Reason
from service import __version__
from service.errors import GatewayError
from service.outbound import GuardedResolver, OutboundGuard, denied, is_denial
from service.providers.base import UpstreamCall
from service.sse import EventTooLarge, SseDecoder, SseEvent

_USER_AGENT = f"symbia-integrations/{__version__}"

# Family of the pooled session for user-supplied URLs (guarded) and for the internal Symbia
# services the operator configured (trusted).
OUTBOUND = "outbound"
INTERNAL = "internal"

_REDIRECTS = (301, 302, 303, 307, 308)
# Never carried to another origin by a redirect.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Extra header names that hold credentials (an API key header): dropped on a redirect to
    # another origin, like Authorization.
    secret_headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    url: str
    attempts: int = 1

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    payload: Any          # decoded JSON, or text when the body is not JSON


class UpstreamTransport:
    def __init__(self, pool_size: int, max_response_bytes: int, guard: OutboundGuard | None = None) -> None:
        self._pool_size = pool_size
        self._max_response_bytes = max_response_bytes
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self.guard = guard or OutboundGuard()

    def _session(self, family: str) -> aiohttp.ClientSession:
        session = self._sessions.get(family)
        if session is None or session.closed:
            if family == OUTBOUND:
                # Short DNS cache: the guard must see what a name resolves to now.
                connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=10, keepalive_timeout=30,
                                                 resolver=GuardedResolver(self.guard))
            else:
                connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300, keepalive_timeout=60)
            session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                headers={"user-agent": _USER_AGENT},
                trust_env=False,
            )
            self._sessions[family] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def open_stream(self, family: str, call: UpstreamCall, timeout_s: float, *, provider: str,
                          operation: str) -> "UpstreamStream | UpstreamResponse":
        """Send a streaming request. A 2xx answer comes back as an UpstreamStream to read events
        from; anything else is read whole (bounded) as an UpstreamResponse for the adapter's
        error classifier. `timeout_s` bounds the wait for the answer and every gap between two
        reads of the stream, not the stream's total length."""
        headers = {"accept": "text/event-stream", **call.headers}
        data = None
        if call.body is not None:
            data = orjson.dumps(call.body)
            headers["content-type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._check(family, call.url)
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._session(family).request(call.method, call.url, data=data, headers=headers,
                                                               timeout=timeout, allow_redirects=False)
            if 200 <= response.status < 300:
                return UpstreamStream(response, timeout_s, self._max_response_bytes, provider, operation)
            try:
                body = await self._read(response, provider, operation)
            finally:
                response.release()
            return UpstreamResponse(response.status, response.headers, _decode(body))
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(provider, operation, timeout_s) from None
        except aiohttp.ClientError as exc:
            raise _network_error(exc, provider, operation) from None

    async def send(self, family: str, call: UpstreamCall, timeout_s: float, *, provider: str,
                   operation: str) -> UpstreamResponse:
        headers = {"accept": "application/json", **call.headers}
        data = None
        if call.body is not None:
            data = orjson.dumps(call.body)
            headers["content-type"] = "application/json"
        self._check(family, call.url)
        try:
            async with self._session(family).request(
                call.method, call.url, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False,
            ) as response:
                body = await self._read(response, provider, operation)
                return UpstreamResponse(response.status, response.headers, _decode(body))
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(provider, operation, timeout_s) from None
        except aiohttp.ClientError as exc:
            raise _network_error(exc, provider, operation) from None

    def _check(self, family: str, url: str) -> None:
        """OUTBOUND URLs pass the guard before anything is sent (the resolver checks again)."""
        if family == OUTBOUND:
            self.guard.check_url(url, "URL")

    async def fetch(self, family: str, request: HttpRequest, timeout_s: float, *, name: str,
                    operation: str | None = None, max_bytes: int | None = None,
                    max_redirects: int = 0) -> HttpResponse:
        """One HTTP exchange with a size cap and one deadline for all redirect hops. In the
        OUTBOUND family every hop's URL passes the outbound guard, and credential headers are
        not carried to another origin."""
        deadline = time.monotonic() + timeout_s
        method, url, body, headers = request.method.upper(), request.url, request.body, dict(request.headers)
        secret = {*_CREDENTIAL_HEADERS, *(h.lower() for h in request.secret_headers)}
        guarded = family == OUTBOUND
        session = self._session(family)
        try:
            for hop in range(max_redirects + 1):
                if guarded:
                    self.guard.check_url(url, "redirect target" if hop else "URL")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                async with session.request(method, url, data=body, headers=headers, allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=remaining)) as response:
                    location = response.headers.get("location")
                    if response.status in _REDIRECTS and location and hop < max_redirects:
                        target = urljoin(url, location)
                        if response.status == 303 or (response.status in (301, 302) and method not in ("GET", "HEAD")):
                            method, body = "GET", None
                            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                        if _origin(target) != _origin(url):
                            headers = {k: v for k, v in headers.items() if k.lower() not in secret}
                        url = target
                        continue
                    data = await self._read(response, name, operation or "", max_bytes)
                    return HttpResponse(response.status, response.reason or "", response.headers, data, url)
            raise GatewayError(f"{name} redirected too many times", ErrorCategory.provider,
                               reason=Reason.UPSTREAM_ERROR, provider=name, operation=operation)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(name, operation, timeout_s) from None
        except aiohttp.ClientError as exc:
            raise _network_error(exc, name, operation) from None

    async def _read(self, response: aiohttp.ClientResponse, provider: str, operation: str,
                    max_bytes: int | None = None) -> bytes:
        limit = max_bytes or self._max_response_bytes
        length = response.content_length
        if length is not None:
            if length > limit:
                raise _too_large(provider, operation)
            return await response.read()
        chunks, total = [], 0  # chunked: count as we go
        async for chunk in response.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > limit:
                raise _too_large(provider, operation)
            chunks.append(chunk)
        return b"".join(chunks)


# After a stream's end marker: how long and how much to read for its connection to be reusable.
_DRAIN_S = 1.0
_DRAIN_BYTES = 64 * 1024


class UpstreamAborted(Exception):
    """The stream was aborted on our side (the consumer went away); not an upstream failure."""


class UpstreamStream:
    """A 2xx streaming answer being read: server-sent events as they arrive. `abort()` closes
    the connection at once (from any task), which cancels the request upstream: providers stop
    generating, and bill, when the client goes away."""

    def __init__(self, response: aiohttp.ClientResponse, timeout_s: float, max_event_bytes: int, provider: str,
                 operation: str) -> None:
        self._response = response
        self._timeout_s = timeout_s
        self._max_event_bytes = max_event_bytes
        self._provider = provider
        self._operation = operation
        self.aborted = False

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def events(self) -> AsyncIterator[SseEvent]:
        decoder = SseDecoder(self._max_event_bytes)
        try:
            async for data in self._response.content.iter_any():
                for event in decoder.feed(data):
                    yield event
            if self.aborted:
                raise UpstreamAborted
            for event in decoder.close():
                yield event
        except (TimeoutError, aiohttp.ServerTimeoutError):
            if self.aborted:
                raise UpstreamAborted from None
            raise GatewayError(f"{self._provider} sent nothing for {self._timeout_s:g}s in the middle of the stream",
                               ErrorCategory.timeout, reason=Reason.UPSTREAM_TIMEOUT, provider=self._provider,
                               operation=self._operation) from None
        except aiohttp.ClientError as exc:
            if self.aborted:
                raise UpstreamAborted from None
            raise GatewayError(f"The connection to {self._provider} broke in the middle of the stream "
                               f"({type(exc).__name__})", ErrorCategory.network, reason=Reason.STREAM_INTERRUPTED,
                               provider=self._provider, operation=self._operation) from None
        except EventTooLarge:
            raise _too_large(self._provider, self._operation) from None

    def abort(self) -> None:
        self.aborted = True
        self._response.close()

    async def finish(self) -> None:
        """After the end marker: read what little follows (the chunked terminator) so the
        connection goes back to the pool; an upstream that keeps talking loses its connection."""
        content = self._response.content
        try:
            async with asyncio.timeout(_DRAIN_S):
                drained = 0
                while not content.at_eof() and drained <= _DRAIN_BYTES:
                    drained += len(await content.readany())
        except (TimeoutError, aiohttp.ClientError):
            pass
        if content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _timeout(provider: str, operation: str | None, timeout_s: float) -> GatewayError:
    return GatewayError(f"Request to {provider} timed out after {timeout_s:g}s", ErrorCategory.timeout,
                        reason=Reason.UPSTREAM_TIMEOUT, provider=provider, operation=operation)


def _network_error(exc: aiohttp.ClientError, name: str, operation: str | None) -> GatewayError:
    """A connection that failed; the outbound guard's refusal (inside DNS) is a 403, not a network error."""
    if is_denial(exc):
        return denied(f"Refused to connect to {name}: its host resolves to a non-public address; "
                      "list the host in INTEGRATIONS_OUTBOUND_ALLOW to allow it")
    return GatewayError(f"Network error connecting to {name}: {type(exc).__name__}", ErrorCategory.network,
                        reason=Reason.UPSTREAM_UNREACHABLE, provider=name, operation=operation)


def _too_large(provider: str, operation: str) -> GatewayError:
    return GatewayError(f"{provider} answered with more than the allowed response size", ErrorCategory.provider,
                        reason=Reason.UPSTREAM_INVALID_RESPONSE, provider=provider, operation=operation)


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
