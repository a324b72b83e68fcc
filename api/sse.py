"""Server-sent events from a bus stream (docs/STREAMING.md). A plain ASGI response rather than
Starlette's StreamingResponse, so that the three ways a stream can end are explicit:

* the worker's terminal message: `end` (the dialect's final event, then `[DONE]` for OpenAI) or
  `error` (an error event carrying the error body: never a clean end);
* the bus fails (worker lost, gateway timeout): an error event in the route's error format;
* the HTTP client goes away (disconnect noticed by a watcher on `receive`, or a failed write):
  the bus stream is closed, which cancels the request at the worker and upstream.
"""

import asyncio
from collections.abc import Callable

from starlette.types import Receive, Scope, Send

from api.bus import BusError, BusStream, StreamClosed, StreamMessage
from contracts import headers as h
from contracts.streaming import SseDialect

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),     # proxies (nginx) must not buffer the stream
]


def sse_event(event: str | None, data: bytes) -> bytes:
    """One SSE event; bus bodies are compact JSON (no raw newlines), so one `data:` line."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class SseResponse:
    def __init__(self, stream: BusStream, dialect: SseDialect, bus_error_body: Callable[[BusError], bytes]) -> None:
        self._stream = stream
        self._dialect = dialect
        self._bus_error_body = bus_error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream, dialect = self._stream, self._dialect
        headers = list(_HEADERS)
        request_id = stream.headers.get(h.REQUEST_ID)
        if request_id:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            data = b""
            try:
                async for message in stream:
                    data = self._render(message)
                    while stream.ready():  # a burst already arrived: one write (one wakeup) for all of it
                        data += self._render(await stream.__anext__())
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    data = b""
            except BusError as exc:
                await send({"type": "http.response.body", "more_body": True,
                            "body": data + sse_event(dialect.error_event, self._bus_error_body(exc))})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (StreamClosed, OSError):
            pass  # the client went away; closing the stream below cancels the upstream
        finally:
            watcher.cancel()
            stream.close()

    def _render(self, message: StreamMessage) -> bytes:
        dialect = self._dialect
        if message.kind == h.KIND_CHUNK:
            return sse_event(dialect.chunk_event, message.body)
        if message.kind == h.KIND_END:
            data = sse_event(dialect.end_event, message.body) if message.body else b""
            if dialect.done_marker:
                data += b"data: " + dialect.done_marker.encode() + b"\n\n"
            return data
        return sse_event(dialect.error_event, message.body)

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._stream.abort("client disconnected")
                return
