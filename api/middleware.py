"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): security headers
and the `x-trace-id` every response carries (reference §2.2)."""

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"x-xss-protection", b"1; mode=block"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


def trace_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """Inbound x-trace-id, else the trace id of a W3C traceparent, else a new one."""
    traceparent = None
    for name, value in headers:
        if name == b"x-trace-id" and value:
            return value.decode("latin-1")[:128]
        if name == b"traceparent":
            traceparent = value.decode("latin-1")
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) >= 4 and len(parts[1]) == 32:
            return parts[1]
    return uuid.uuid4().hex


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = trace_id_of(scope["headers"])
        scope.setdefault("state", {})["trace_id"] = trace_id
        extra = [*SECURITY_HEADERS, (b"x-trace-id", trace_id.encode("latin-1"))]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
