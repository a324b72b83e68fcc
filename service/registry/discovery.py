"""Finding an integration's operations: fetch and parse an OpenAPI document, or ask an MCP
server what it offers. Used by register, refresh and the parse previews."""

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from contracts.envelope import ErrorCategory, Reason
from contracts.registry import OpenApiConfig
from service.errors import GatewayError
from service.mcp.client import McpPool, McpTarget, discover, mcp_error
from service.registry.openapi import SpecError, invalid_spec, load_document, parse_spec
from service.settings import Settings
from service.transport import INTERNAL, OUTBOUND, HttpRequest, UpstreamTransport

_SPEC_ACCEPT = "application/json, application/yaml;q=0.9, text/yaml;q=0.9, */*;q=0.5"


@dataclass(slots=True)
class Discovered:
    operations: list[dict[str, Any]]
    namespace: dict[str, Any]
    server_url: str | None = None
    auth: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    info: dict[str, Any] = field(default_factory=dict)
    spec_version: str | None = None
    inline_spec: Any = None            # kept for refresh when the spec was given inline
    capabilities: dict[str, Any] | None = None
    spec_hash: str | None = None


class Discovery:
    def __init__(self, transport: UpstreamTransport, mcp: McpPool, settings: Settings) -> None:
        self._transport = transport
        self._mcp = mcp
        self._settings = settings
        self.guard = transport.guard

    async def fetch_spec(self, url: str, *, name: str, trusted: bool = False,
                         timeout_s: float | None = None) -> tuple[bytes, str]:
        family = INTERNAL if trusted else OUTBOUND
        if not trusted:
            self._transport.guard.check_url(url, "spec URL")
        response = await self._transport.fetch(
            family, HttpRequest("GET", url, {"accept": _SPEC_ACCEPT}), timeout_s or self._settings.spec_fetch_timeout_s,
            name=name, max_bytes=self._settings.spec_max_bytes, max_redirects=self._settings.invoke_max_redirects)
        if not 200 <= response.status < 300:
            raise GatewayError(f"Failed to fetch spec: {response.status} {response.reason}".strip(),
                               ErrorCategory.validation, reason=Reason.SPEC_FETCH_FAILED,
                               upstream_status=response.status)
        return response.body, response.content_type

    async def openapi(self, config: OpenApiConfig, *, name: str, inline: Any = None, trusted: bool = False,
                      id_prefix: str | None = None, extra_tags: tuple[str, ...] = (), exclude=None,
                      timeout_s: float | None = None) -> Discovered:
        spec = config.spec if config.spec is not None else inline
        raw: bytes | str
        if spec is not None:
            raw = spec if isinstance(spec, str) else b""
            content_type, url = "", config.specUrl or ""
        elif config.specUrl:
            raw, content_type = await self.fetch_spec(config.specUrl, name=name, trusted=trusted, timeout_s=timeout_s)
            url = config.specUrl
        else:
            raise GatewayError("No spec URL or inline spec provided", ErrorCategory.validation,
                               reason=Reason.INVALID_REQUEST)

        def parse() -> tuple[Any, Any, str]:
            doc = spec if isinstance(spec, dict) else load_document(raw, content_type, url)
            digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
            return doc, parse_spec(doc, spec_url=url or None, server_override=config.serverUrl,
                                   id_prefix=id_prefix, extra_tags=extra_tags, exclude=exclude), digest

        try:
            doc, parsed, digest = await asyncio.to_thread(parse)
        except SpecError as exc:
            raise invalid_spec(str(exc)) from None
        except RecursionError:
            raise invalid_spec("the document is nested too deeply") from None
        if parsed.server_url and not trusted:
            self._transport.guard.check_url(parsed.server_url, "server URL")
        return Discovered(parsed.operations, parsed.namespace, parsed.server_url, parsed.auth, parsed.info,
                          parsed.version, inline_spec=doc if spec is not None else None, spec_hash=digest)

    async def mcp(self, target: McpTarget, *, name: str) -> Discovered:
        try:
            async with self._mcp.session(target, name) as connection:
                operations, namespace, capabilities = await discover(connection.client)
        except GatewayError as exc:
            if exc.reason in (Reason.OUTBOUND_DENIED, Reason.STDIO_NOT_ALLOWED, Reason.INVALID_REQUEST):
                raise
            exc.message = f"Failed to connect to MCP server: {exc.message}"
            exc.args = (exc.message,)
            raise
        except Exception as exc:
            err = mcp_error(exc, name, None)
            err.message = f"Failed to connect to MCP server: {err.message}"
            raise err from None
        return Discovered(operations, namespace, target.server_url, capabilities=capabilities)
