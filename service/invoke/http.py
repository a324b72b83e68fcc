"""An OpenAPI operation + invoke params → one HTTP request; the response → invoke data.

Parameters go where the operation declares them (path, query, header, cookie); params it
does not declare go to the query string. Path values are percent-encoded (a `/` cannot
escape its segment) and `.`/`..` are refused. Query values: lists repeat the name (or are
comma-joined with `explode: false`), objects become `name[key]=value` (deepObject) or
`key=value` (form). Caller headers cannot replace a header the gateway sets (auth, content
type, host, framing) nor carry the platform's own `x-symbia-*` headers.
"""

import base64
import re
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.invoke.auth import AppliedAuth
from service.transport import HttpRequest, HttpResponse

_PATH_PARAM = re.compile(r"\{([^{}/]+)\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                      "trailer", "proxy-authorization", "proxy-connection", "content-type"})
_TEXT_TYPES = ("text/", "application/xml", "application/javascript", "application/x-www-form-urlencoded")


def invalid(message: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.validation, reason=Reason.INVALID_REQUEST)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _query_pairs(name: str, value: Any, param: dict[str, Any] | None) -> list[tuple[str, str]]:
    explode = (param or {}).get("explode", True)
    style = (param or {}).get("style", "form")
    if isinstance(value, list | tuple):
        items = [_scalar(v) for v in value if v is not None]
        return [(name, v) for v in items] if explode else [(name, ",".join(items))]
    if isinstance(value, dict):
        if style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items() if v is not None]
        if explode:
            return [(str(k), _scalar(v)) for k, v in value.items() if v is not None]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in value.items() if v is not None))]
    return [(name, _scalar(value))]


def caller_headers(headers: dict[str, str], reserved: set[str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if not _HEADER_NAME.match(name):
            raise invalid(f"Invalid header name: {name[:64]!r}")
        if "\r" in value or "\n" in value:
            raise invalid(f"Invalid value for header {name}")
        if lower in _FRAMING or lower in reserved or lower.startswith("x-symbia-"):
            continue
        out[lower] = value
    return out


def _encode_body(body: Any, content_type: str) -> bytes:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        if not isinstance(body, dict):
            raise invalid("This operation takes a form body: send body as an object")
        return urlencode([(k, _scalar(v)) for k, v in body.items() if v is not None]).encode()
    if ctype.startswith("multipart/"):
        raise invalid("multipart/form-data request bodies are not supported by invoke")
    if isinstance(body, str) and not (ctype.endswith("json")):
        return body.encode()
    return orjson.dumps(body)


def build_request(op: dict[str, Any], params: dict[str, Any], body: Any, extra_headers: dict[str, str],
                  server_url: str, auth: AppliedAuth, fixed_headers: dict[str, str] | None = None,
                  authenticated: bool = False) -> HttpRequest:
    """`authenticated`: the integration has a credential of its own, so the caller's
    Authorization (and cookie) headers are dropped rather than sent beside it."""
    method = (op.get("method") or "GET").upper()
    declared = {p["name"]: p for p in op.get("parameters") or [] if p.get("location") != "body"}
    used: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = params.get(name)
        if value is None:
            raise invalid(f"Missing path parameter '{name}'")
        text = _scalar(value)
        if text in ("", ".", ".."):
            raise invalid(f"Invalid value for path parameter '{name}'")
        used.add(name)
        return quote(text, safe="")

    path = _PATH_PARAM.sub(substitute, op.get("path") or "")
    headers: dict[str, str] = {}
    cookies = list(auth.cookies)
    query: list[tuple[str, str]] = []
    for name, value in params.items():
        if name in used or value is None:
            continue
        param = declared.get(name)
        location = param["location"] if param else "query"
        if location == "header":
            headers[name.lower()] = _scalar(value)
        elif location == "cookie":
            cookies.append(f"{name}={quote(_scalar(value), safe='')}")
        else:
            query += _query_pairs(name, value, param)
    query += auth.query

    base = (auth.server_url or server_url).rstrip("/")
    url = base + (path if path.startswith("/") or not path else "/" + path)
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query, quote_via=quote)

    data = None
    content_type = ((op.get("requestBody") or {}).get("contentType") or "application/json")
    if body is not None and method not in ("GET", "HEAD"):
        data = _encode_body(body, content_type)
    # Header names are lower-cased so that a caller's `Accept` replaces the default `accept`
    # instead of travelling beside it.
    gateway = {k.lower(): v for k, v in {**(fixed_headers or {}), **auth.headers}.items()}
    if data is not None:
        gateway["content-type"] = content_type
    if cookies:
        gateway["cookie"] = "; ".join(cookies)
    reserved = set(gateway) | ({"authorization", "cookie"} if authenticated else set())
    final = {"accept": "application/json, */*;q=0.8", **headers, **caller_headers(extra_headers, reserved), **gateway}
    return HttpRequest(method, url, final, data, secret_headers=auth.secret_headers)


def response_data(response: HttpResponse) -> tuple[Any, str | None]:
    """(data, encoding): JSON decoded, text as text, anything else base64."""
    body = response.body
    if not body:
        return None, None
    ctype = response.content_type
    if "json" in ctype or not ctype:
        try:
            return orjson.loads(body), None
        except orjson.JSONDecodeError:
            if not ctype:
                try:
                    return body.decode("utf-8"), None
                except UnicodeDecodeError:
                    return base64.b64encode(body).decode(), "base64"
            return body.decode("utf-8", "replace"), None
    if ctype.startswith(_TEXT_TYPES) or ctype.endswith(("+xml", "+json")):
        return body.decode("utf-8", "replace"), None
    return base64.b64encode(body).decode(), "base64"
