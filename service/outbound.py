"""The one outbound guard for every user-supplied URL: OpenAPI spec URLs, server URLs,
MCP server URLs and every redirect they answer with.

A URL may reach only public addresses. Loopback, private, link-local (cloud metadata at
169.254.169.254), shared (100.64/10), multicast, reserved and unspecified addresses are
refused *after DNS resolution*, unless the URL's host is listed in INTEGRATIONS_OUTBOUND_ALLOW.
The check runs twice: on the URL before anything is sent (a clear 403 for literal addresses
and bad schemes), and inside the HTTP clients' DNS step for every connection they open
(aiohttp resolver, httpx2 network backend), so a name that resolves to a public address at
registration and to 127.0.0.1 later (DNS rebinding) is still refused, and so is a redirect.

URLs that come from the operator's configuration (provider base URLs, internal Symbia
services) are trusted and do not pass through here.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import httpcore2
from aiohttp.abc import AbstractResolver, ResolveResult

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SHARED = ipaddress.ip_network("100.64.0.0/10")      # carrier-grade NAT: not global, not "private"


class OutboundDenied(OSError):
    """Raised inside the HTTP clients' DNS step; an OSError so that they treat it as a
    connection failure and never send anything."""


def denied(message: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.validation, status=403, reason=Reason.OUTBOUND_DENIED)


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED):
        return False
    return ip.is_global


@dataclass(frozen=True, slots=True)
class _Allowed:
    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _parse_allow(entries: Iterable[str]) -> _Allowed:
    names, suffixes, networks = set(), [], []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry.startswith("*."):
            suffixes.append(entry[1:])
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return _Allowed(frozenset(names), tuple(suffixes), tuple(networks))


class OutboundGuard:
    """Allow-list entries: a host name (`api.internal`), a wildcard (`*.corp.example`), an IP
    address or a CIDR (`10.0.0.0/8`). An entry matches the host as written in the URL: listing
    127.0.0.1 allows `http://127.0.0.1:8080`, not `http://localhost:8080`."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._allow = _parse_allow(allow)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self._allow.names or any(host.endswith(s) for s in self._allow.suffixes):
            return True
        ip = _address(host)
        return ip is not None and any(ip in net for net in self._allow.networks)

    def check_url(self, url: str, what: str = "URL") -> str:
        """Static checks before anything is sent; returns the host. DNS names are checked
        again at connect time by the clients' resolvers."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise denied(f"The {what} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise denied(f"The {what} must be an http or https URL")
        host = parts.hostname
        if not host:
            raise denied(f"The {what} has no host")
        if parts.username or parts.password:
            raise denied(f"The {what} must not carry credentials; configure them as the integration's credential")
        if self.host_allowed(host):
            return host
        ip = _address(host)
        if ip is not None and not is_public(ip):
            raise denied(f"The {what} points to a non-public address ({host}); "
                         "list the host in INTEGRATIONS_OUTBOUND_ALLOW to allow it")
        return host

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Connect-time check of what `host` resolved to: all addresses must be public."""
        if self.host_allowed(host):
            return
        for value in addresses:
            ip = _address(value)
            if ip is None or not is_public(ip):
                raise OutboundDenied(f"{host} resolves to a non-public address")

    async def resolve(self, host: str, port: int) -> list[str]:
        """getaddrinfo, then the address check; for clients that connect by address."""
        if _address(host) is not None:
            addresses = [host.strip("[]")]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        self.check_addresses(host, addresses)
        return addresses


def is_denial(exc: BaseException) -> bool:
    """True when an HTTP client failed because the guard refused the address."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OutboundDenied):
            return True
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, OutboundDenied):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class GuardedResolver(AbstractResolver):
    """aiohttp resolver: the default resolution, then the guard. aiohttp skips the resolver
    for literal IP hosts, which `OutboundGuard.check_url` covers before every request."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._guard.check_addresses(host, (r["host"] for r in results))
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpx2 (MCP SDK) network backend: resolve, check, then connect to the checked address,
    so the address that was checked is the address that is used. TLS still verifies and
    sends SNI for the host name (httpcore2 takes it from the URL, not from the socket)."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - interface
                          local_address: str | None = None, socket_options=None) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(self._guard.resolve(host, port), timeout)
        except OutboundDenied:
            raise
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except httpcore2.ConnectError as exc:
                last = exc
        raise last or httpcore2.ConnectError(f"cannot connect to {host}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109 - interface
                                  socket_options=None):
        raise OutboundDenied("unix sockets are not allowed for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
