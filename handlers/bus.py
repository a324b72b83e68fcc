"""Bus glue shared by every request-reply subscriber: message → Command → Reply → NatsResponse.

Subscribers take the raw message (decoder returns it; no DI context parameters, which cost a
thread hop per message) and validate the bytes once in the service (perf-notes levers 2, 4).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from faststream.nats import NatsMessage
from nats.aio.client import Client

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from handlers.lane import InboundMessage, Outgoing
from handlers.payloads import PayloadStore
from service.commands import Command, Handler, Reply, error_reply, new_request_id, run_command
from service.errors import GatewayError

log = logging.getLogger("symbia.integrations.bus")

# Called with every authenticated command and its reply, before the reply is sent (usage).
CallObserver = Callable[[Command, Reply], Awaitable[None]]
# Turns the reply observers saw (the envelope on failure) into the one sent (e.g. OpenAI errors).
ReplyRenderer = Callable[[Reply], Reply]


# A request as either lane delivers it: FastStream's NatsMessage or the direct lane's InboundMessage.
BusMessage = NatsMessage | InboundMessage


async def load_body(command: Command, message: BusMessage, payloads: PayloadStore) -> None:
    """Drops a request that waited past its requester's deadline, and fetches a claim-checked
    body; either way before any upstream work."""
    now_ms = time.time() * 1000
    deadline = command.headers.get(h.DEADLINE)
    if deadline and deadline.isdigit() and now_ms > int(deadline):
        raise GatewayError("The caller's deadline passed before a worker took the request", ErrorCategory.timeout,
                           status=504, reason=Reason.DEADLINE_EXCEEDED)
    start_by = command.headers.get(h.START_BY)
    if start_by and start_by.isdigit() and now_ms > int(start_by):
        raise GatewayError("The request waited too long for a free worker", ErrorCategory.timeout,
                           status=503, reason=Reason.QUEUE_TIMEOUT)
    ref = command.headers.get(h.PAYLOAD_REF)
    command.body = await payloads.take(ref) if ref else message.body


async def notify(observers: Sequence[CallObserver], command: Command, reply: Reply) -> None:
    """Hands an authenticated command and its reply to every observer (usage). An observer that
    fails is logged and skipped: the call already happened, and its reply (or a job's result)
    must not turn into a 500 nor a redelivery because bookkeeping failed."""
    if command.record is None:
        return
    for observe in list(observers):
        try:
            await observe(command, reply)
        except Exception:
            log.exception("call observer %s failed for request %s; the reply is sent unchanged",
                          getattr(observe, "__qualname__", observe), command.request_id)


def worker_stopping() -> GatewayError:
    """The worker is stopping and its drain timeout ran out with the request unfinished."""
    return GatewayError("The worker stopped before the request finished; it may or may not have run",
                        ErrorCategory.internal, status=503, retryable=True, reason=Reason.WORKER_STOPPING)


async def run_observed(handler: Handler, command: Command, observers: Sequence[CallObserver]) -> Reply:
    """The pipeline every command goes through, request-reply or job: the handler under
    run_command (failures become the envelope), then the call observers (usage) for
    authenticated calls."""
    reply = await run_command(handler, command)
    await notify(observers, command, reply)
    return reply


async def as_message(message: NatsMessage) -> NatsMessage:
    """Decoder: hand the handler the message itself, undecoded. A coroutine on purpose:
    FastStream runs a plain-function decoder in a thread pool (a thread hop per message)."""
    return message


class Heartbeats:
    """Tells requesters that opted in (`x-progress: 1`) that a long request is still running.
    One loop for all in-flight requests instead of a timer per request."""

    def __init__(self, nc: Client, interval_s: float) -> None:
        self._nc = nc
        self._interval_s = interval_s
        self._inflight: dict[int, tuple[str, float]] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, key: int, reply_to: str) -> None:
        self._inflight[key] = (reply_to, time.monotonic())

    def discard(self, key: int) -> None:
        self._inflight.pop(key, None)

    async def _loop(self) -> None:
        beat = {h.KIND: h.KIND_HEARTBEAT}
        while True:
            await asyncio.sleep(self._interval_s)
            due = time.monotonic() - self._interval_s / 2
            for reply_to, since in list(self._inflight.values()):
                if since <= due and self._nc.is_connected:
                    with contextlib.suppress(Exception):
                        await self._nc.publish(reply_to, b"", headers=beat)


class RequestLoad(Protocol):
    """Told when a request-reply call begins and ends (handlers.jobs.InteractiveFirst)."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class BusEndpoint:
    """Runs one service handler for bus messages."""

    def __init__(self, handler: Handler, request_id_prefix: str, payloads: Callable[[], PayloadStore],
                 heartbeats: Callable[[], Heartbeats | None], observers: Sequence[CallObserver] = (),
                 nc: Callable[[], Client] | None = None, render: ReplyRenderer | None = None,
                 load: "RequestLoad | None" = None) -> None:
        self._handler = handler
        self._load = load
        self._nc = nc
        self._prefix = request_id_prefix
        self._payloads = payloads
        self._heartbeats = heartbeats
        self._observers = observers  # the live list: pipelines may register after start-up
        self._render = render

    async def __call__(self, message: BusMessage) -> Outgoing:
        headers = message.headers or {}
        command = Command(b"", headers, new_request_id(headers, self._prefix))
        heartbeats = self._heartbeats() if headers.get(h.PROGRESS) == "1" and message.reply_to else None
        key = id(command)
        if heartbeats:
            heartbeats.add(key, message.reply_to)
        if self._load is not None:
            self._load.begin()
        try:
            reply = await self._reply(message, command)
        except asyncio.CancelledError:
            # The worker is stopping and its drain timeout ran out: tell the requester now
            # (retryable) instead of letting it wait for silence to be noticed.
            if message.reply_to and self._nc is not None:
                reply = error_reply(worker_stopping(), command)
                if self._render is not None:
                    reply = self._render(reply)
                with contextlib.suppress(Exception):
                    await self._nc().publish(message.reply_to, reply.body,
                                             headers={**reply.headers, h.STATUS: str(reply.status)})
            raise
        finally:
            if heartbeats:
                heartbeats.discard(key)
            if self._load is not None:
                self._load.end()
        if self._render is not None:
            reply = self._render(reply)
        return await self._encode(reply)

    async def _reply(self, message: BusMessage, command: Command) -> Reply:
        async def handle(command: Command) -> Reply:
            await load_body(command, message, self._payloads())
            return await self._handler(command)

        return await run_observed(handle, command, self._observers)

    async def _encode(self, reply: Reply) -> Outgoing:
        headers = {**reply.headers, h.STATUS: str(reply.status)}
        payloads = self._payloads()
        if payloads.fits(reply.body):
            return Outgoing(reply.body, headers)
        headers[h.PAYLOAD_REF] = await payloads.put(reply.body)
        return Outgoing(b"", headers)
