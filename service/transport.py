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

import time
from collections.abc import Mapping
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

    async def send(self, family: str, call: UpstreamCall, timeout_s: float, *, provider: str,
                   operation: str) -> UpstreamResponse:
        headers = {"accept": "application/json", **call.headers}
        data = None
        if call.body is not None:
            data = orjson.dumps(call.body)
            headers["content-type"] = "application/json"
        try:
            async with self._session(family).request(
                call.method, call.url, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False,
            ) as response:
                body = await self._read(response, provider, operation)
                return UpstreamResponse(response.status, response.headers, _decode(body))
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise GatewayError(f"Request to {provider} timed out after {timeout_s:g}s", ErrorCategory.timeout,
                               reason=Reason.UPSTREAM_TIMEOUT, provider=provider, operation=operation) from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"Network error connecting to {provider}: {type(exc).__name__}",
                               ErrorCategory.network, reason=Reason.UPSTREAM_UNREACHABLE, provider=provider,
                               operation=operation) from None

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
            raise GatewayError(f"Request to {name} timed out after {timeout_s:g}s", ErrorCategory.timeout,
                               reason=Reason.UPSTREAM_TIMEOUT, provider=name, operation=operation) from None
        except aiohttp.ClientError as exc:
            if is_denial(exc):
                raise denied(f"Refused to connect to {name}: its host resolves to a non-public address; "
                             "list the host in INTEGRATIONS_OUTBOUND_ALLOW to allow it") from None
            raise GatewayError(f"Network error connecting to {name}: {type(exc).__name__}",
                               ErrorCategory.network, reason=Reason.UPSTREAM_UNREACHABLE, provider=name,
                               operation=operation) from None

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
