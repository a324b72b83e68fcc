"""Request-reply from the HTTP adapter to the workers, on plain nats-py.

One wildcard inbox subscription serves every request (as nats-py's own `request` does), but
unlike `request` a request here may receive several messages: heartbeats from a worker that
is still busy (`x-kind: heartbeat`), then the reply. So a long LLM call can run for minutes
while a killed worker is noticed within INTEGRATIONS_WORKER_SILENCE_S, and "no responders"
comes back at once.
"""

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
import uuid
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
from contracts.subjects import PAYLOAD_BUCKET, PAYLOAD_BUCKET_DESCRIPTION, PAYLOAD_TTL_S

_HEADROOM = 64 * 1024  # headers and framing count against max_payload

log = logging.getLogger("symbia.integrations.api")


class BusError(Exception):
    """`kind`: no_workers | worker_lost | timeout | unavailable."""

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
        if self._settings.nats_tls_ca:
            options["tls"] = ssl.create_default_context(cafile=str(self._settings.nats_tls_ca))
        if self._settings.nats_creds:
            options["user_credentials"] = str(self._settings.nats_creds)
        servers = [s.strip() for s in self._settings.nats_url.split(",") if s.strip()]
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
        if pending is None or pending.future.done():
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
        headers[h.START_BY] = str(int((time.time() + silence) * 1000))
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

    async def _bucket(self) -> ObjectStore:
        if self._store is None:
            js = self._nc.jetstream()
            try:  # bind to the bucket when it exists (whoever created it), else create it
                self._store = await js.object_store(PAYLOAD_BUCKET)
            except NotFoundError:
                self._store = await js.create_object_store(
                    PAYLOAD_BUCKET, ObjectStoreConfig(ttl=PAYLOAD_TTL_S, description=PAYLOAD_BUCKET_DESCRIPTION))
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
