"""Streaming request-reply on the bus (docs/STREAMING.md): a request on a `.stream` subject gets
several messages on its reply subject: `start`, `chunk` × n (x-seq 1, 2, ...), then `end` or
`error`; heartbeats in between while the upstream is slow.

Flow control is credit based. The requester acknowledges what it has consumed (`ack` with the
last x-seq, to the `x-ack-to` subject announced in `start`); the worker never has more than the
window of chunks unacknowledged, so a slow reader slows the upstream read (TCP back-pressure up
to the provider) instead of piling messages up. A requester that acknowledges nothing for
INTEGRATIONS_STREAM_ACK_TIMEOUT_S while chunks are outstanding, or sends `cancel`, is gone: the
upstream request is cancelled at once and the call is recorded as partial.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import headers as h
from handlers.bus import (
    BusMessage,
    CallObserver,
    Heartbeats,
    ReplyRenderer,
    RequestLoad,
    load_body,
    notify,
    worker_stopping,
)
from handlers.payloads import PayloadStore
from service.commands import Command, Reply, error_reply, failure_reply, new_request_id
from service.stream import ChatStream
from service.transport import UpstreamAborted

log = logging.getLogger("symbia.integrations.streams")

StreamOpener = Callable[[Command], Awaitable[ChatStream]]


class RequesterGone(Exception):
    pass


class StreamFlow:
    """Credit of one stream: how far the requester has read, and whether it is still there."""

    __slots__ = ("_event", "_on_cancel", "ack_to", "acked", "cancelled", "sent", "stalled_since", "window")

    def __init__(self, ack_to: str, window: int, on_cancel: Callable[[], None]) -> None:
        self.ack_to = ack_to
        self.window = window
        self.acked = 0
        self.sent = 0
        self.stalled_since: float | None = None   # chunks outstanding with no ack progress since then
        self.cancelled: str | None = None
        self._on_cancel = on_cancel
        self._event = asyncio.Event()

    def sent_one(self, seq: int) -> None:
        self.sent = seq
        if self.stalled_since is None:
            self.stalled_since = time.monotonic()

    def ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = min(seq, self.sent)
        self.stalled_since = time.monotonic() if self.sent > self.acked else None
        self._event.set()

    def cancel(self, reason: str) -> None:
        if self.cancelled is None:
            self.cancelled = reason
            self._on_cancel()      # closes the upstream connection: the pending read ends now
            self._event.set()

    async def credit(self, seq: int, timeout_s: float) -> None:
        """Wait until chunk `seq` fits in the window."""
        while True:
            if self.cancelled is not None:
                raise RequesterGone(self.cancelled)
            if seq <= self.acked + self.window:
                return
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                self.cancel(f"no acknowledgement for {timeout_s:g}s")


class StreamFlows:
    """All streams of one worker process: one wildcard subscription for their acks and cancels
    (as the api has one inbox for its replies) and one watchdog loop."""

    def __init__(self, nc: Client, ack_timeout_s: float, default_window: int) -> None:
        self.nc = nc
        self.ack_timeout_s = ack_timeout_s
        self._default_window = default_window
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._flows: dict[str, StreamFlow] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox()
        await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_control)
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def open(self, requested_window: str | None, on_cancel: Callable[[], None]) -> tuple[str, StreamFlow]:
        window = self._default_window
        if requested_window and requested_window.isdigit() and int(requested_window) > 0:
            window = min(int(requested_window), self._default_window)
        token = str(next(self._tokens))
        flow = StreamFlow(f"{self._prefix}.{token}", window, on_cancel)
        self._flows[token] = flow
        return token, flow

    def close(self, token: str) -> None:
        self._flows.pop(token, None)

    async def _on_control(self, msg: Msg) -> None:
        flow = self._flows.get(msg.subject[len(self._prefix) + 1:])
        if flow is None:
            return
        headers = msg.headers or {}
        kind = headers.get(h.KIND)
        if kind == h.KIND_ACK:
            seq = headers.get(h.SEQ, "")
            if seq.isdigit():
                flow.ack(int(seq))
        elif kind == h.KIND_CANCEL:
            flow.cancel("cancelled by the requester")

    async def _watch(self) -> None:
        interval = min(1.0, self.ack_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            limit = time.monotonic() - self.ack_timeout_s
            for flow in list(self._flows.values()):
                if flow.stalled_since is not None and flow.stalled_since < limit:
                    flow.cancel(f"no acknowledgement for {self.ack_timeout_s:g}s")


class StreamEndpoint:
    """Runs one streaming service handler for bus messages (subscriber with no_reply: it
    publishes its messages itself, straight on the nats-py connection)."""

    def __init__(self, opener: StreamOpener, request_id_prefix: str, payloads: Callable[[], PayloadStore],
                 heartbeats: Callable[[], Heartbeats | None], flows: Callable[[], StreamFlows],
                 observers: Sequence[CallObserver] = (), render: ReplyRenderer | None = None,
                 load: RequestLoad | None = None) -> None:
        self._open = opener
        self._load = load
        self._prefix = request_id_prefix
        self._payloads = payloads
        self._heartbeats = heartbeats
        self._flows = flows
        self._observers = observers
        self._render = render

    async def __call__(self, message: BusMessage) -> None:
        reply_to = message.reply_to
        if not reply_to:
            return  # nobody to stream to
        headers = message.headers or {}
        command = Command(b"", headers, new_request_id(headers, self._prefix))
        heartbeats = self._heartbeats()
        key = id(command)
        if heartbeats:
            heartbeats.add(key, reply_to)
        if self._load is not None:
            self._load.begin()
        reply: Reply | None = None
        try:
            try:
                await load_body(command, message, self._payloads())
                stream = await self._open(command)
            except asyncio.CancelledError:
                await self._stopping(reply_to, command, 0)
                raise
            except Exception as exc:
                reply = failure_reply(exc, command, self._open)
                await self._terminal(reply_to, h.KIND_ERROR, self._rendered(reply), 0)
                return
            reply = await self._stream(stream, command, reply_to, headers)
        except Exception:  # the bus itself failed (connection lost...): nothing more to tell anyone
            log.exception("stream %s failed on the bus", command.request_id)
        finally:
            if heartbeats:
                heartbeats.discard(key)
            if self._load is not None:
                self._load.end()
            if reply is not None:
                await notify(self._observers, command, reply)

    def _rendered(self, reply: Reply) -> Reply:
        return self._render(reply) if self._render is not None else reply

    async def _stream(self, stream: ChatStream, command: Command, reply_to: str, headers) -> Reply:
        flows = self._flows()
        publish, timeout_s = flows.nc.publish, flows.ack_timeout_s
        token, flow = flows.open(headers.get(h.STREAM_WINDOW), stream.abort)
        seq = 0
        started = False

        async def commit() -> None:
            # The stream is committed (`start`, HTTP 200) with its first output, not when the upstream
            # answered: whatever fails before any output is still one plain error reply with its own
            # status, and `start` travels with the first chunk (one bus flush, one HTTP write).
            nonlocal started
            started = True
            await publish(reply_to, b"", headers={
                **stream.headers, h.KIND: h.KIND_START, h.STATUS: "200", h.ACK_TO: flow.ack_to,
                h.STREAM_WINDOW: str(flow.window), h.REQUEST_ID: command.request_id})

        async def send_chunk(body: bytes) -> None:
            nonlocal seq
            if not started:
                await commit()
            seq += 1
            await flow.credit(seq, timeout_s)
            await publish(reply_to, body, headers={h.KIND: h.KIND_CHUNK, h.SEQ: str(seq)})
            flow.sent_one(seq)

        try:
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for body in chunks:
                    await send_chunk(body)
                    if seq == 1:
                        # Let the connection's flusher send start + first chunk now: when the upstream
                        # delivers a burst, the loop would otherwise decode all of it first (TTFB).
                        await asyncio.sleep(0)
            trailing, end, reply = stream.completed()
            for body in trailing:
                await send_chunk(body)
            if not started:  # a complete answer with no output at all
                await commit()
            await self._terminal(reply_to, h.KIND_END, Reply(200, end, reply.headers), seq + 1)
            return reply
        except (RequesterGone, UpstreamAborted):
            return stream.cancelled(flow.cancelled or "cancelled")
        except asyncio.CancelledError as exc:
            # The worker is stopping and its drain timeout ran out: end the stream with a
            # retryable error now instead of letting the requester wait for silence.
            stream.failed(exc)
            await self._stopping(reply_to, command, flow.sent + 1 if started else 0)
            raise
        except Exception as exc:
            if flow.cancelled is not None:  # whatever the abort made the upstream read raise
                return stream.cancelled(flow.cancelled)
            reply = failure_reply(exc, command, self._open)
            stream.failed(exc)
            await self._terminal(reply_to, h.KIND_ERROR, self._rendered(reply), seq + 1 if started else 0)
            return reply
        finally:
            stream.close()
            flows.close(token)

    async def _stopping(self, reply_to: str, command: Command, seq: int) -> None:
        with contextlib.suppress(Exception):
            await self._terminal(reply_to, h.KIND_ERROR, self._rendered(error_reply(worker_stopping(), command)), seq)

    async def _terminal(self, reply_to: str, kind: str, reply: Reply, seq: int) -> None:
        headers = {**reply.headers, h.KIND: kind, h.STATUS: str(reply.status), h.SEQ: str(seq)}
        body = reply.body
        payloads = self._payloads()
        if not payloads.fits(body):
            headers[h.PAYLOAD_REF] = await payloads.put(body)
            body = b""
        await self._flows().nc.publish(reply_to, body, headers=headers)
