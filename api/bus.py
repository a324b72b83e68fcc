"""Request-reply from the HTTP adapter to the workers, on plain nats-py.

One wildcard inbox subscription serves every request (as nats-py's own `request` does), but
unlike `request` a request here may receive several messages: heartbeats from a worker that
is still busy (`x-kind: heartbeat`), then the reply. So a long LLM call can run for minutes
while a killed worker is noticed within INTEGRATIONS_WORKER_SILENCE_S, and "no responders"
comes back at once.

A streaming request (`open_stream`) registers a `BusStream` under its token instead: the same
inbox receives its start, chunks, heartbeats and terminal message (docs/STREAMING.md).
"""

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ObjectStoreConfig
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from api.settings import ApiSettings
from contracts import headers as h
from contracts.natsurl import split_credentials
from contracts.subjects import PAYLOAD_BUCKET, PAYLOAD_BUCKET_DESCRIPTION, PAYLOAD_TTL_S

_HEADROOM = 64 * 1024  # headers and framing count against max_payload

log = logging.getLogger("symbia.integrations.api")


class BusError(Exception):
    """`kind`: no_workers | worker_lost | timeout | unavailable | stream_broken."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class BusReply:
    status: int
    body: bytes
    headers: dict[str, str]


class _Pending:
    __slots__ = ("future", "last_seen")

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future
        self.last_seen = time.monotonic()


async def _within(deadline: float, operation):
    """Object-store transfers count against the request's deadline like the wait for a reply."""
    try:
        return await asyncio.wait_for(operation, max(0.001, deadline - time.monotonic()))
    except TimeoutError:
        raise BusError("timeout", "The request took longer than the gateway allows") from None


class BusClient:
    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._nc: Client | None = None
        self._prefix = ""
        self._pending: dict[str, _Pending] = {}
        self._tokens = itertools.count(1)
        self._store: ObjectStore | None = None
        self._connecting: asyncio.Task | None = None
        self._last_error_log = 0.0
        self._subscriptions: list[tuple[str, Callable[[Msg], Awaitable[None]]]] = []

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def start(self) -> None:
        """Connect in the background and keep reconnecting: the adapter serves health checks and
        answers 503 `bus_unavailable` while NATS is unreachable, instead of hanging in start-up."""
        self._connecting = asyncio.create_task(self._connect())

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connecting), timeout_s)
        return self.connected

    async def _connect(self) -> None:
        options: dict = {"name": "integrations-api", "max_reconnect_attempts": -1, "reconnect_time_wait": 1,
                         "inbox_prefix": "_INBOX_api", "allow_reconnect": True, "error_cb": self._on_error,
                         "disconnected_cb": self._on_disconnected, "reconnected_cb": self._on_reconnected}
        servers, auth = split_credentials(self._settings.nats_servers)
        options.update(auth)
        tls = self._settings.nats_tls_context()
        if tls is not None:
            options["tls"] = tls
        if self._settings.nats_creds:
            options["user_credentials"] = str(self._settings.nats_creds)
        nc = await nats.connect(servers, **options)
        self._prefix = nc.new_inbox()
        await nc.subscribe(f"{self._prefix}.*", cb=self._on_message)
        for subject, cb in self._subscriptions:
            await nc.subscribe(subject, cb=cb)
        self._nc = nc
        log.info("connected to the bus")

    async def _on_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:  # one line every 10 s while NATS is unreachable
            self._last_error_log = now
            log.warning("bus: %s", exc or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("bus: disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("bus: reconnected")

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        if nc.is_connected:
            await nc.drain()  # let in-flight replies arrive
        else:
            await nc.close()  # reconnecting: nothing to drain

    async def _on_message(self, msg: Msg) -> None:
        pending = self._pending.get(msg.subject[len(self._prefix) + 1:])
        if pending is None:
            return
        if pending.__class__ is BusStream:
            pending.deliver(msg)
            return
        if pending.future.done():
            return
        headers = msg.headers or {}
        if headers.get("Status") == "503" and not msg.data:
            pending.future.set_exception(BusError("no_workers", "No worker is serving this request"))
        elif headers.get(h.KIND) == h.KIND_HEARTBEAT:
            pending.last_seen = time.monotonic()
        else:
            pending.future.set_result(msg)

    async def request(self, subject: str, body: bytes, headers: dict[str, str], timeout_s: float) -> BusReply:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise BusError("unavailable", "The message bus is not reachable")
        silence = self._settings.worker_silence_s
        deadline = time.monotonic() + timeout_s
        if len(body) + _HEADROOM > nc.max_payload:
            headers[h.PAYLOAD_REF] = await _within(deadline, self._put(body))
            body = b""
        headers[h.PROGRESS] = "1"
        headers[h.START_BY] = _start_by(headers, silence)
        token = str(next(self._tokens))
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[token] = pending
        try:
            await nc.publish(subject, body, reply=f"{self._prefix}.{token}", headers=headers)
            msg = await self._wait(pending, deadline, silence)
        finally:
            del self._pending[token]
        reply_headers = msg.headers or {}
        data = msg.data
        ref = reply_headers.get(h.PAYLOAD_REF)
        if ref:
            data = await _within(deadline, self._take(ref))
        try:
            status = int(reply_headers.get(h.STATUS, "502"))
        except ValueError:
            status = 502
        return BusReply(status, data, reply_headers)

    async def open_stream(self, subject: str, body: bytes, headers: dict[str, str], timeout_s: float,
                          window: int) -> "BusStream | BusReply":
        """Publish a streaming request and wait for its first message: `start` gives the open
        BusStream to iterate; a failure before streaming comes back as a plain BusReply."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise BusError("unavailable", "The message bus is not reachable")
        silence = self._settings.worker_silence_s
        deadline = time.monotonic() + timeout_s
        headers[h.PROGRESS] = "1"
        headers[h.START_BY] = _start_by(headers, silence)
        headers[h.STREAM_WINDOW] = str(window)
        if len(body) + _HEADROOM > nc.max_payload:
            headers[h.PAYLOAD_REF] = await _within(deadline, self._put(body))
            body = b""
        token = str(next(self._tokens))
        stream = BusStream(self, token, deadline, silence)
        self._pending[token] = stream
        try:
            await nc.publish(subject, body, reply=f"{self._prefix}.{token}", headers=headers)
            first = await stream.first()
        except BaseException:
            self._pending.pop(token, None)
            raise
        first_headers = first.headers or {}
        if first_headers.get(h.KIND) == h.KIND_START:
            stream.started(first_headers)
            return stream
        self._pending.pop(token, None)
        data = first.data
        if ref := first_headers.get(h.PAYLOAD_REF):
            data = await _within(deadline, self._take(ref))
        return BusReply(_status(first_headers), data, first_headers)

    def _forget(self, token: str) -> None:
        self._pending.pop(token, None)

    async def _ack(self, subject: str, seq: int) -> None:
        nc = self._nc
        if nc is not None and nc.is_connected:
            await nc.publish(subject, b"", headers={h.KIND: h.KIND_ACK, h.SEQ: str(seq)})

    def _control(self, subject: str, headers: dict[str, str]) -> None:
        """Fire-and-forget ack/cancel to a worker (never awaited inside a cancelled scope)."""
        nc = self._nc
        if nc is not None and nc.is_connected:
            task = asyncio.get_running_loop().create_task(nc.publish(subject, b"", headers=headers))
            task.add_done_callback(_ignore_result)

    @staticmethod
    async def _wait(pending: _Pending, deadline: float, silence_s: float) -> Msg:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise BusError("timeout", "The request took longer than the gateway allows")
            if now - pending.last_seen >= silence_s:
                raise BusError("worker_lost", "The worker handling the request stopped responding")
            wait = min(deadline, pending.last_seen + silence_s) - now
            done, _ = await asyncio.wait((pending.future,), timeout=wait)
            if done:
                return pending.future.result()

    async def take(self, name: str, deadline: float) -> bytes:
        return await _within(deadline, self._take(name))

    async def _bucket(self) -> ObjectStore:
        if self._store is None:
            js = self._nc.jetstream()
            try:  # bind to the bucket when it exists (whoever created it), else create it
                self._store = await js.object_store(PAYLOAD_BUCKET)
            except NotFoundError:  # normally the workers made it; their start-up fixes its replicas
                self._store = await js.create_object_store(PAYLOAD_BUCKET, ObjectStoreConfig(
                    ttl=PAYLOAD_TTL_S, replicas=self._settings.js_replicas, description=PAYLOAD_BUCKET_DESCRIPTION))
        return self._store

    async def _put(self, body: bytes) -> str:
        name = uuid.uuid4().hex
        await (await self._bucket()).put(name, body)
        return name

    async def _take(self, name: str) -> bytes:
        store = await self._bucket()
        result = await store.get(name)
        await store.delete(name)
        return result.data or b""

    # --- events (fire-and-forget), for the MCP endpoint (api/mcp) --------------------------------

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
        """Plain subscription, kept across reconnects; made at connect time when not connected yet."""
        self._subscriptions.append((subject, cb))
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.subscribe(subject, cb=cb)

    async def publish(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Best effort: dropped while the bus is unreachable."""
        nc = self._nc
        if nc is not None and nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.publish(subject, body, headers=headers)


def _start_by(headers: dict[str, str], silence_s: float) -> str:
    """When a worker must have taken the request: within the silence limit, and before the
    caller's deadline when it has one."""
    start_by = int((time.time() + silence_s) * 1000)
    deadline = headers.get(h.DEADLINE)
    if deadline and deadline.isdigit():
        start_by = min(start_by, int(deadline))
    return str(start_by)


def _status(headers: dict[str, str]) -> int:
    try:
        return int(headers.get(h.STATUS, "502"))
    except ValueError:
        return 502


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _ignore_result(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


class StreamClosed(Exception):
    """The consumer closed the stream (its HTTP client went away)."""


@dataclass(slots=True)
class StreamMessage:
    kind: str                 # chunk | end | error
    body: bytes
    status: int = 200


class BusStream:
    """The requester's side of one stream: messages queue here as the inbox callback delivers
    them; iterating yields chunks in order, then the terminal message. Whenever the consumer
    has caught up (asks for more and nothing is queued) it acknowledges what it consumed, so the
    worker's window follows what the HTTP client actually read."""

    __slots__ = ("_acked", "_client", "_closed", "_consumed", "_deadline", "_finished", "_messages", "_silence_s",
                 "_token", "_wakeup", "ack_to", "closed_reason", "headers", "last_seen")

    def __init__(self, client: BusClient, token: str, deadline: float, silence_s: float) -> None:
        self._client = client
        self._token = token
        self._deadline = deadline
        self._silence_s = silence_s
        self._messages: deque[Msg] = deque()
        self._wakeup: asyncio.Future | None = None
        self._consumed = 0
        self._acked = 0
        self._finished = False
        self._closed = False
        self.closed_reason: str | None = None
        self.ack_to = ""
        self.headers: dict[str, str] = {}
        self.last_seen = time.monotonic()

    def deliver(self, msg: Msg) -> None:
        self.last_seen = time.monotonic()
        headers = msg.headers
        if headers and headers.get(h.KIND) == h.KIND_HEARTBEAT:
            return
        self._messages.append(msg)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            _wake(self._wakeup)

    async def first(self) -> Msg:
        """The first message that is not a heartbeat: `start`, or the reply of a failure."""
        msg = await self._next_msg()
        headers = msg.headers or {}
        if headers.get("Status") == "503" and not msg.data:
            raise BusError("no_workers", "No worker is serving this request")
        return msg

    def started(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.ack_to = headers.get(h.ACK_TO, "")

    def ready(self) -> bool:
        """A message is already queued: the next `__anext__` returns without waiting."""
        return bool(self._messages) and not self._finished

    def __aiter__(self) -> "BusStream":
        return self

    async def __anext__(self) -> StreamMessage:
        if self._finished:
            raise StopAsyncIteration
        if not self._messages and self._consumed > self._acked and self.ack_to:
            self._acked = self._consumed
            await self._client._ack(self.ack_to, self._consumed)
        msg = await self._next_msg()
        headers = msg.headers or {}
        kind = headers.get(h.KIND)
        seq = headers.get(h.SEQ, "")
        if not seq.isdigit() or int(seq) != self._consumed + 1:
            self._finished = True
            raise BusError("stream_broken", f"stream messages arrived out of order (got {seq!r} after "
                                            f"{self._consumed})")
        self._consumed += 1
        if kind == h.KIND_CHUNK:
            return StreamMessage(h.KIND_CHUNK, msg.data)
        self._finished = True
        self.close()
        data = msg.data
        if ref := headers.get(h.PAYLOAD_REF):
            data = await self._client.take(ref, self._deadline)
        return StreamMessage(h.KIND_END if kind == h.KIND_END else h.KIND_ERROR, data, _status(headers))

    async def _next_msg(self) -> Msg:
        loop = asyncio.get_running_loop()
        while True:
            if self._messages:
                return self._messages.popleft()
            if self.closed_reason is not None:
                raise StreamClosed(self.closed_reason)
            now = time.monotonic()
            if now >= self._deadline:
                raise BusError("timeout", "The request took longer than the gateway allows")
            if now - self.last_seen >= self._silence_s:
                raise BusError("worker_lost", "The worker handling the request stopped responding")
            # A bare future and one timer handle: cheaper per chunk than asyncio.wait / wait_for.
            self._wakeup = waiter = loop.create_future()
            timer = loop.call_later(min(self._deadline, self.last_seen + self._silence_s) - now, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._wakeup = None

    def abort(self, reason: str) -> None:
        """From another task (the HTTP disconnect watcher): the pending read ends now."""
        self.closed_reason = self.closed_reason or reason
        self._wake()

    def close(self) -> None:
        """Stop listening; a stream that had not ended is cancelled at the worker (which cancels
        the upstream request). Synchronous on purpose: it runs in `finally` of cancelled tasks."""
        if self._closed:
            return
        self._closed = True
        self._client._forget(self._token)
        if not self._finished and self.ack_to:
            self._client._control(self.ack_to, {h.KIND: h.KIND_CANCEL})
