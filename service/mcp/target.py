"""A stored MCP configuration + auth + resolved secret → where and how to connect."""

from typing import Any

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.invoke.auth import apply_auth
from service.mcp.client import HTTP_TRANSPORTS, McpTarget


def mcp_target(config: dict[str, Any], auth: dict[str, Any], secret: str | None) -> McpTarget:
    transport = config.get("transport") or "http"
    server_url = config.get("serverUrl")
    headers = dict(config.get("headers") or {})
    if secret is not None:
        applied = apply_auth(auth, secret, server_url)
        if applied.query or applied.cookies:
            raise GatewayError("MCP servers take credentials in headers (bearer, basic, apiKey in a header) or in "
                               "the URL (path)", ErrorCategory.validation, reason=Reason.INTEGRATION_MISCONFIGURED)
        headers.update(applied.headers)
        server_url = applied.server_url
    return McpTarget(
        transport="http" if transport in HTTP_TRANSPORTS else transport, server_url=server_url,
        command=config.get("command"), args=tuple(config.get("args") or ()),
        env=tuple(sorted((config.get("env") or {}).items())), headers=tuple(sorted(headers.items())),
        mode=config.get("mode") or "auto")
