"""Publishes usage events to JetStream, ahead of the caller's reply and without waiting for it.

The event is published on the worker's request connection, the one the reply is sent on, just
before the reply. NATS keeps the order of one connection's messages, so if the caller got the
reply, the NATS server had received the event first: a worker that dies after replying (even
`kill -9`) has already handed its event over. JetStream's acknowledgement is awaited in the
background, so the reply does not pay for a round trip to the stream (docs/BENCHMARKS.md).

An event that JetStream refuses or does not acknowledge within ACK_TIMEOUT_S (no stream, no
quorum, storage full) goes to a bounded in-memory buffer that a background task republishes,
oldest first, on the pipeline's own connection until JetStream takes it. While the buffer is
not empty, new events join it directly. Each event carries `Nats-Msg-Id` = its id: republishing
an event that JetStream did store (its ack was lost) is dropped by the stream's duplicate
window, and the store counts an id once in any case.

What can be lost, and is logged at ERROR with the event JSON so it can be replayed: events
dropped when the buffer is full, and events still buffered when the worker stops or crashes.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError

from contracts.usage import usage_subject
from service.usage.events import encode_event

log = logging.getLogger("symbia.integrations.usage")

ACK_TIMEOUT_S = 5.0         # an unacknowledged event is republished after this long
RETRY_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 5.0
# More unacknowledged events than this means JetStream is not keeping up: buffer instead. Our
# own bound, below nats-py's, so that publish_async never waits for a slot (waiting costs a
# task and an event-loop round even when a slot is free).
MAX_UNACKED = 4000


@dataclass(frozen=True, slots=True)
class PendingEvent:
    subject: str
    data: bytes
    event_id: str


class UsagePublisher:
    def __init__(self, stream: str, buffer_max: int, publish_timeout_s: float = 0.5) -> None:
        self._stream = stream
        self._timeout_s = publish_timeout_s
        self._max = buffer_max
        self._js: JetStreamContext | None = None            # the pipeline's own connection
        self._reply_js: JetStreamContext | None = None      # the connection replies are sent on
        self._ensure_stream: Callable[[], Awaitable[None]] | None = None
        self._backlog: deque[PendingEvent] = deque()
        self._unacked: dict[str, tuple[PendingEvent, float, asyncio.Future]] = {}
        self._sending: PendingEvent | None = None           # taken from the backlog, not acknowledged yet
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._backlog) + (self._sending is not None)

    @property
    def unacknowledged(self) -> int:
        return len(self._unacked)

    def attach(self, js: JetStreamContext, ensure_stream: Callable[[], Awaitable[None]]) -> None:
        self._js = js
        self._ensure_stream = ensure_stream
        self._task = asyncio.create_task(self._republish_loop(), name="usage-republish")
        if self._backlog:
            self._wake.set()

    def publish_on(self, nc: Client) -> None:
        """Publish first attempts on the connection the replies go out on (see the module doc)."""
        self._reply_js = nc.jetstream(publish_async_max_pending=MAX_UNACKED + 1)

    async def publish(self, event: Mapping[str, Any]) -> None:
        """`event`: the fields of a UsageEvent. Never raises: usage must not turn a served call
        into an error."""
        item = PendingEvent(usage_subject(event["orgId"]), encode_event(event), event["id"])
        if self._js is None or self._backlog or len(self._unacked) >= MAX_UNACKED:
            self._hold(item)
            return
        try:
            if self._reply_js is not None:
                future = await self._reply_js.publish_async(item.subject, item.data, stream=self._stream,
                                                            headers=self._headers(item))
                self._unacked[item.event_id] = (item, time.monotonic() + ACK_TIMEOUT_S, future)
                future.add_done_callback(functools.partial(self._acked, item))
            else:  # no request connection (embedded use, the --await-ack benchmark): wait for the ack here
                await self._send(item, self._timeout_s)
        except Exception as exc:
            self._refused(item, exc)

    def _acked(self, item: PendingEvent, future: asyncio.Future) -> None:
        if self._unacked.pop(item.event_id, None) is None:
            return  # already given up on (timed out) and buffered
        if future.cancelled():
            self._refused(item, asyncio.CancelledError())
        elif future.exception() is not None:
            self._refused(item, future.exception())

    def _refused(self, item: PendingEvent, exc: BaseException) -> None:
        if not self._backlog:
            log.warning("JetStream did not take usage event %s (%s); buffering usage events for republishing",
                        item.event_id, type(exc).__name__)
        self._hold(item)

    @staticmethod
    def _headers(item: PendingEvent) -> dict[str, str]:
        return {"Nats-Msg-Id": item.event_id, "Content-Type": "application/json"}

    async def _send(self, item: PendingEvent, timeout_s: float) -> None:
        assert self._js is not None
        await self._js.publish(item.subject, item.data, timeout=timeout_s, stream=self._stream,
                               headers=self._headers(item))

    def _hold(self, item: PendingEvent) -> None:
        if len(self._backlog) >= self._max:
            lost = self._backlog.popleft()
            self.dropped += 1
            log.error("usage buffer full (%d): dropped usage event %s", self._max, lost.data.decode())
        self._backlog.append(item)
        self._wake.set()

    def _expire_unacked(self) -> None:
        now = time.monotonic()
        for event_id, (item, deadline, future) in list(self._unacked.items()):
            if deadline <= now:
                del self._unacked[event_id]
                future.cancel()  # frees its nats-py slot
                self._refused(item, TimeoutError())

    async def _republish_loop(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._expire_unacked()
            while self._backlog:
                item = self._sending = self._backlog.popleft()  # taken out: _hold may drop the oldest meanwhile
                try:
                    await self._send(item, RETRY_TIMEOUT_S)
                except Exception as exc:
                    self._sending = None
                    if len(self._backlog) >= self._max:
                        self.dropped += 1
                        log.error("usage buffer full (%d): dropped usage event %s", self._max, item.data.decode())
                    else:
                        self._backlog.appendleft(item)
                    if isinstance(exc, NoStreamResponseError | NotFoundError) and self._ensure_stream:
                        with contextlib.suppress(Exception):
                            await self._ensure_stream()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    self._expire_unacked()
                    continue
                self._sending = None
                if backoff > 0.1:
                    log.info("JetStream takes usage events again")
                backoff = 0.1
            self._wake.clear()

    async def close(self, timeout_s: float) -> None:
        """After the request connection closed: republish what JetStream did not confirm (a
        duplicate of a stored event is harmless), for up to `timeout_s`; log the rest."""
        self._reply_js = None
        for item, _, _ in list(self._unacked.values()):
            self._hold(item)
        self._unacked.clear()
        deadline = time.monotonic() + timeout_s
        while self.buffered and self._task is not None and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sending is not None:
            self._backlog.appendleft(self._sending)
            self._sending = None
        for item in self._backlog:
            log.error("usage event not published before shutdown: %s", item.data.decode())
        self._backlog.clear()
