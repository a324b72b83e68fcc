"""How a resolved credential is attached to an outbound request, per the integration's auth
config (reference §6.1 auth types; `basic` and `oauth2` now send credentials)."""

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError

DEFAULT_API_KEY_HEADER = "X-API-Key"


def normalize_auth(auth: dict[str, Any] | None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """One shape for what the original accepted in several: `header` (catalog) is an API key
    in a header; catalog entries may carry `metadata.authType` / `metadata.authHeader`."""
    auth = dict(auth or {})
    metadata = metadata or {}
    if not auth.get("type") or auth.get("type") == "none":
        kind = metadata.get("authType")
        if kind in ("bearer", "apiKey", "basic", "path", "header", "oauth2"):
            auth = {"type": kind}
            if metadata.get("authHeader"):
                auth["header"] = metadata["authHeader"]
    kind = auth.get("type") or "none"
    if kind == "header":
        auth["type"] = kind = "apiKey"
    if kind == "apiKey":
        location = auth.get("in") or "header"
        auth["in"] = location
        auth["name"] = auth.get("name") or auth.get("header") or DEFAULT_API_KEY_HEADER
        if location == "header":
            auth["header"] = auth["name"]
    if kind == "path":
        auth["placeholder"] = auth.get("placeholder") or "token"
    auth["type"] = kind
    return {k: v for k, v in auth.items() if v is not None}


def needs_credential(auth: dict[str, Any]) -> bool:
    return auth.get("type", "none") != "none"


@dataclass(slots=True)
class AppliedAuth:
    headers: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    cookies: list[str] = field(default_factory=list)
    server_url: str | None = None
    secret_headers: tuple[str, ...] = ()


def misconfigured(message: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.validation, reason=Reason.INTEGRATION_MISCONFIGURED)


def apply_auth(auth: dict[str, Any], secret: str | None, server_url: str | None) -> AppliedAuth:
    applied = AppliedAuth(server_url=server_url)
    kind = auth.get("type", "none")
    if kind == "none" or secret is None:
        return applied
    if kind in ("bearer", "oauth2"):
        applied.headers["Authorization"] = f"Bearer {secret}"
    elif kind == "basic":
        user, sep, password = secret.partition(":")
        token = base64.b64encode(f"{user}:{password if sep else ''}".encode()).decode()
        applied.headers["Authorization"] = f"Basic {token}"
    elif kind == "apiKey":
        name = auth.get("name") or DEFAULT_API_KEY_HEADER
        if auth.get("in") == "query":
            applied.query.append((name, secret))
        elif auth.get("in") == "cookie":
            applied.cookies.append(f"{name}={quote(secret, safe='')}")
        else:
            applied.headers[name] = secret
            applied.secret_headers = (name,)
    elif kind == "path":
        placeholder = "{" + (auth.get("placeholder") or "token") + "}"
        if not server_url or placeholder not in server_url:
            raise misconfigured(f"auth type path needs {placeholder} in the server URL")
        applied.server_url = server_url.replace(placeholder, quote(secret, safe=""))
    return applied
