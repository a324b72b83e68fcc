"""The FastAPI application: the route table becomes bus requests; health and docs are local."""

import logging
import re
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from api.body import BodyTooLarge, read_body
from api.bus import BusClient, BusError, BusReply
from api.docs import llms_txt, openapi_document
from api.mcp import McpEndpoint
from api.middleware import ResponseHeaders
from api.responses import JSON, envelope_response, error_body, error_response, request_id_of
from api.settings import ApiSettings
from api.sse import SseResponse
from contracts import headers as h
from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from contracts.http import ALIAS_PREFIX
from contracts.mcp import ENDPOINT_PATH
from contracts.openai import V1_PREFIX
from contracts.routes import ROUTES, Route
from contracts.streaming import wants_stream

log = logging.getLogger("symbia.integrations.api")


def mask(url: str) -> str:
    """Hide credentials in a NATS URL before it reaches a log."""
    return re.sub(r"//[^@/,]*@", "//***@", url)

_BUS_ERRORS = {
    # kind → (status, category, reason, message)
    "no_workers": (503, ErrorCategory.internal, Reason.NO_WORKERS,
                   "No integrations worker is running; retry shortly"),
    "worker_lost": (503, ErrorCategory.internal, Reason.WORKER_LOST,
                    "The worker handling the request stopped responding; the request may or may not have run"),
    "timeout": (504, ErrorCategory.timeout, Reason.BUS_TIMEOUT, "The request took longer than the gateway allows"),
    "unavailable": (503, ErrorCategory.internal, Reason.BUS_UNAVAILABLE,
                    "The gateway's message bus is unavailable; retry shortly"),
    "stream_broken": (502, ErrorCategory.internal, Reason.STREAM_INTERRUPTED,
                      "The stream from the worker lost messages; the answer is incomplete"),
}


# Browser MCP clients send these (Streamable HTTP); the server answers with mcp-session-id.
MCP_REQUEST_HEADERS = ("Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID")


def bus_headers(request: Request) -> dict[str, str]:
    out = {}
    for name in h.IDENTITY_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            out[name] = value
    out[h.TRACE_ID] = request.scope.get("state", {}).get("trace_id", "")
    return out


class BadTimeout(Exception):
    pass


def caller_budget(request: Request, limit_s: float) -> float:
    """The longest this adapter may wait: its own limit, or less when the caller sent X-Timeout-Ms."""
    value = request.headers.get(h.TIMEOUT_MS)
    if value is None:
        return limit_s
    value = value.strip()
    if not value.isdigit() or not 0 < int(value) <= 86_400_000:
        raise BadTimeout
    return min(limit_s, int(value) / 1000)


def with_deadline(headers: dict[str, str], budget_s: float, limit_s: float) -> dict[str, str]:
    """A caller budget travels to the worker as an absolute deadline (docs/RESILIENCE.md)."""
    if budget_s < limit_s:
        headers[h.DEADLINE] = str(int((time.time() + budget_s) * 1000))
    return headers


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    bus = BusClient(settings)
    mcp = McpEndpoint(bus, settings, bus_headers, _BUS_ERRORS)   # docs/MCP.md

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        bus.start()
        if not await bus.wait_connected(settings.bus_connect_wait_s):
            log.warning("bus not reachable at start-up (%s); serving 503 until it is", mask(settings.nats_url))
        async with mcp.lifespan():
            yield
        await bus.close()

    app = FastAPI(title="Symbia Integrations", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.bus = bus
    timeout = settings.request_timeout_s
    max_body = settings.max_body_bytes

    def bus_error(route: Route, request: Request, exc: BusError) -> Response:
        status, category, reason, message = _BUS_ERRORS[exc.kind]
        return error_response(status, message, category, reason=reason, retryable=True,
                              request_id=request_id_of(request), error_format=route.error_format)

    def reply_response(reply: BusReply) -> Response:
        headers = {k: v for k in h.HTTP_REPLY_HEADERS if (v := reply.headers.get(k)) is not None}
        if (retry := reply.headers.get("x-should-retry")) is not None:  # OpenAI SDKs read it
            headers["x-should-retry"] = retry
        return Response(reply.body, status_code=reply.status, media_type=JSON, headers=headers)

    def bad_timeout(route: Route, request: Request) -> Response:
        return error_response(400, "X-Timeout-Ms must be a positive number of milliseconds", ErrorCategory.validation,
                              reason=Reason.INVALID_REQUEST, request_id=request_id_of(request),
                              error_format=route.error_format)

    async def forward(route: Route, request: Request, body: bytes) -> Response:
        try:
            budget = caller_budget(request, timeout)
        except BadTimeout:
            return bad_timeout(route, request)
        try:
            reply = await bus.request(route.subject, body, with_deadline(bus_headers(request), budget, timeout),
                                      budget)
        except BusError as exc:
            return bus_error(route, request, exc)
        return reply_response(reply)

    async def forward_stream(route: Route, request: Request, body: bytes) -> Response | SseResponse:
        request_id = request_id_of(request)
        try:
            budget = caller_budget(request, timeout)
        except BadTimeout:
            return bad_timeout(route, request)
        try:
            opened = await bus.open_stream(route.stream.subject, body,
                                           with_deadline(bus_headers(request), budget, timeout), budget,
                                           settings.stream_window)
        except BusError as exc:
            return bus_error(route, request, exc)
        if isinstance(opened, BusReply):  # refused before streaming: a plain HTTP error
            return reply_response(opened)

        def mid_stream_error(exc: BusError) -> bytes:
            status, category, reason, message = _BUS_ERRORS[exc.kind]
            return error_body(status, message, category, reason=reason, retryable=True, request_id=request_id,
                              error_format=route.error_format)[1]

        return SseResponse(opened, route.stream.dialect, mid_stream_error)

    def body_route(route: Route):
        with_path_params = "{" in route.path

        async def endpoint(request: Request) -> Response | SseResponse:
            try:
                body = await read_body(request, max_body)
            except BodyTooLarge:
                return error_response(413, f"Request body too large. Maximum size is {max_body} bytes",
                                      ErrorCategory.validation, reason=Reason.BODY_TOO_LARGE,
                                      request_id=request_id_of(request), error_format=route.error_format)
            if with_path_params:  # contracts/routes.py: {...path params, "body": <parsed body>}
                try:
                    parsed = orjson.loads(body) if body.strip() else None
                except orjson.JSONDecodeError as exc:
                    return error_response(400, f"Malformed JSON body: {exc}", ErrorCategory.validation,
                                          reason=Reason.INVALID_JSON, request_id=request_id_of(request),
                                          error_format=route.error_format)
                body = orjson.dumps({**request.path_params, "body": parsed})
            # Only bodies that mention "stream" are parsed here; the hot path stays bytes-in, bytes-out.
            elif route.stream is not None and b'"stream"' in body:
                try:
                    streaming = wants_stream(orjson.loads(body))
                except orjson.JSONDecodeError:
                    streaming = False  # the worker answers with the precise 400
                if streaming:
                    return await forward_stream(route, request, body)
            return await forward(route, request, body)

        return endpoint

    def params_route(route: Route):
        async def endpoint(request: Request) -> Response:
            fields: dict = dict(request.query_params)
            fields.update(request.path_params)
            return await forward(route, request, orjson.dumps(fields))

        return endpoint

    for route in ROUTES:
        endpoint = body_route(route) if route.method in ("POST", "PUT", "PATCH") else params_route(route)
        for path in route.paths:
            app.add_route(path, endpoint, methods=[route.method])

    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def live(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "timestamp": now()})

    async def ready(_request: Request) -> Response:
        checks = {"bus": {"status": "ok" if bus.connected else "unhealthy"}}
        if bus.connected:
            try:
                reply = await bus.request(subjects.HEALTH_PING, b"{}", {}, settings.ready_timeout_s)
                checks["workers"] = {"status": "ok" if reply.status == 200 else "unhealthy"}
            except BusError as exc:
                checks["workers"] = {"status": "unhealthy", "message": exc.kind}
        ok = all(c["status"] == "ok" for c in checks.values())
        return JSONResponse({"status": "ok" if ok else "unhealthy", "timestamp": now(), "checks": checks},
                            status_code=200 if ok else 503)

    # The MCP endpoint at its exact path (no trailing-slash redirect), both prefixes.
    for path in (ENDPOINT_PATH, ALIAS_PREFIX + ENDPOINT_PATH.removeprefix("/api")):
        app.add_route(path, mcp, methods=["GET", "POST", "DELETE"])

    for path, handler in (("/health", live), ("/health/live", live), ("/health/ready", ready)):
        app.add_route(path, handler, methods=["GET"])

    openapi_bytes = orjson.dumps(openapi_document())
    llms = llms_txt(full=False)
    llms_full = llms_txt(full=True)

    async def openapi(_request: Request) -> Response:
        return Response(openapi_bytes, media_type=JSON)

    for path in ("/openapi.json", "/docs/openapi.json", "/.well-known/openapi.json"):
        app.add_route(path, openapi, methods=["GET"])
    for path in ("/llms.txt", "/llm.txt", "/docs/llms.txt"):
        app.add_route(path, lambda _r: PlainTextResponse(llms), methods=["GET"])
    for path in ("/llms-full.txt", "/docs/llms-full.txt"):
        app.add_route(path, lambda _r: PlainTextResponse(llms_full), methods=["GET"])
    app.add_route("/", lambda _r: RedirectResponse("/docs/llms.txt", 302), methods=["GET"])
    app.add_route("/api/docs", lambda _r: RedirectResponse("/openapi.json", 302), methods=["GET"])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error_format = "openai" if request.url.path.startswith(V1_PREFIX + "/") else "envelope"
        if exc.status_code == 404:
            return error_response(404, f"Not found: {request.method} {request.url.path}",
                                  ErrorCategory.not_found, reason=Reason.NOT_FOUND,
                                  request_id=request_id_of(request), error_format=error_format)
        if exc.status_code == 405:
            return error_response(405, f"Method {request.method} not allowed on {request.url.path}",
                                  ErrorCategory.validation, reason=Reason.INVALID_REQUEST,
                                  request_id=request_id_of(request), error_format=error_format)
        return envelope_response(exc.status_code, str(exc.detail), ErrorCategory.internal,
                                 request_id=request_id_of(request))

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in the api: %r", exc)
        return envelope_response(500, "Internal server error", ErrorCategory.internal, reason=Reason.INTERNAL,
                                 request_id=request_id_of(request))

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list or ["*"],
        allow_credentials=bool(settings.cors_origin_list),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Org-Id", "X-Request-Id", "X-Service-Id",
                       "X-Env", "X-Environment", "X-Data-Class", "X-Policy-Ref", "traceparent", "X-Timeout-Ms",
                       *MCP_REQUEST_HEADERS],
        expose_headers=["x-trace-id", "x-request-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
                        "x-ratelimit-reset", "mcp-session-id"],
        max_age=86400,
    )
    app.add_middleware(ResponseHeaders)
    return app
