"""Publishes usage events to JetStream before the caller's reply leaves the worker.

The worker awaits JetStream's acknowledgement (the event is stored in the stream) before it
sends the reply, so a worker that dies after replying has lost nothing. When JetStream does
not acknowledge within INTEGRATIONS_USAGE_PUBLISH_TIMEOUT_S (no stream, no quorum, storage
full), the caller still gets the reply at once and the event waits in a bounded in-memory
buffer that a background task republishes, oldest first, until JetStream takes it. While that
buffer is not empty new events join it without waiting, so an outage never slows replies
down twice. Each event carries `Nats-Msg-Id` = its id: a republish that JetStream did store
the first time (the ack was lost) is dropped by the stream's duplicate window, and the store
counts an id once in any case.

What can still be lost, and is logged (ERROR, the event JSON, so it can be replayed): events
dropped when the buffer is full, and events still buffered when the worker stops or crashes.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError

from contracts.usage import UsageEvent, usage_subject

log = logging.getLogger("symbia.integrations.usage")

RETRY_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class PendingEvent:
    subject: str
    data: bytes
    event_id: str


class UsagePublisher:
    def __init__(self, stream: str, publish_timeout_s: float, buffer_max: int) -> None:
        self._stream = stream
        self._timeout_s = publish_timeout_s
        self._max = buffer_max
        self._js: JetStreamContext | None = None
        self._ensure_stream: Callable[[], Awaitable[None]] | None = None
        self._backlog: deque[PendingEvent] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()             # set while nothing is buffered or in flight
        self._drained.set()
        self._task: asyncio.Task | None = None
        self._sending: PendingEvent | None = None   # taken from the backlog, not acknowledged yet
        self.dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._backlog) + (self._sending is not None)

    def attach(self, js: JetStreamContext, ensure_stream: Callable[[], Awaitable[None]]) -> None:
        self._js = js
        self._ensure_stream = ensure_stream
        self._task = asyncio.create_task(self._republish_loop(), name="usage-republish")
        if self._backlog:
            self._wake.set()

    async def publish(self, event: UsageEvent) -> None:
        """Never raises: usage must not turn a served call into an error."""
        item = PendingEvent(usage_subject(event.orgId), event.model_dump_json().encode(), event.id)
        if self._js is None or self._backlog:
            self._hold(item)
            return
        try:
            await self._send(item, self._timeout_s)
        except Exception as exc:
            log.warning("JetStream did not take usage event %s (%s); buffering it for republishing",
                        item.event_id, type(exc).__name__)
            self._hold(item)

    async def _send(self, item: PendingEvent, timeout_s: float) -> None:
        assert self._js is not None
        await self._js.publish(item.subject, item.data, timeout=timeout_s, stream=self._stream,
                               headers={"Nats-Msg-Id": item.event_id, "Content-Type": "application/json"})

    def _hold(self, item: PendingEvent) -> None:
        if len(self._backlog) >= self._max:
            lost = self._backlog.popleft()
            self.dropped += 1
            log.error("usage buffer full (%d): dropped usage event %s", self._max, lost.data.decode())
        self._backlog.append(item)
        self._drained.clear()
        self._wake.set()

    async def _republish_loop(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
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
                    continue
                self._sending = None
                if backoff > 0.1:
                    log.info("JetStream takes usage events again")
                backoff = 0.1
            self._wake.clear()
            self._drained.set()

    async def close(self, timeout_s: float) -> None:
        """Give buffered events until `timeout_s` to reach JetStream; log the rest."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout_s)
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
