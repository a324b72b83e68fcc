"""The direct lane: request-reply and stream subjects served straight from the broker's nats-py
connection, without FastStream's per-message pipeline.

Why: on this stack FastStream's subscriber costs ~0.8 ms of CPU per message against ~0.35 ms for a
nats-py subscription (reference/perf-ceiling.md §3.2); on the 2-core machine of
docs/BENCHMARKS.md one worker serves ~1,000 execute calls per second over NATS through
FastStream subscribers and ~2,500 through this lane.

FastStream still owns the application: lifecycle hooks, the connection (this lane subscribes
on `broker.connection`), the fan-out and health subscribers and the AsyncAPI document, which is
generated from the same endpoint table with the FastStream lane (`INTEGRATIONS_BUS_LANE=faststream`
serves every subject through FastStream subscribers instead).

What FastStream's subscriber gave that the lane keeps: the queue group, at most `concurrency`
messages in flight per subject (further messages wait in the subscription), a reply in the error
envelope for anything an endpoint lets escape, and a drain that withdraws interest, lets
in-flight calls finish and cancels them (their endpoints then reply `worker_stopping`) when the
drain timeout runs out.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason, envelope_json, error_envelope

log = logging.getLogger("symbia.integrations.lane")


@dataclass(slots=True)
class InboundMessage:
    """What an endpoint reads of a request: the same attributes as FastStream's NatsMessage."""

    subject: str
    body: bytes
    headers: dict[str, str]
    reply_to: str


@dataclass(slots=True)
class Outgoing:
    """A reply to publish on the requester's inbox."""

    body: bytes
    headers: dict[str, str]


# An endpoint answers with a reply (request-reply) or None (streams publish their own messages).
Endpoint = Callable[[InboundMessage], Awaitable["Outgoing | None"]]


def internal_error() -> Outgoing:
    """The reply for whatever escapes an endpoint (a bug): the requester gets the envelope now
    instead of waiting out its timeout."""
    body = envelope_json(error_envelope("Internal server error", ErrorCategory.internal, reason=Reason.INTERNAL))
    return Outgoing(body, {h.STATUS: "500"})


class DirectLane:
    """Subscribes endpoints in the workers' queue group on one nats-py connection."""

    def __init__(self, queue: str, concurrency: int) -> None:
        self._queue = queue
        self._concurrency = concurrency
        self._endpoints: list[tuple[str, Endpoint]] = []
        self._subscriptions: list[Subscription] = []
        self._inflight: set[asyncio.Task] = set()
        self._nc: Client | None = None

    def add(self, subject: str, endpoint: Endpoint) -> None:
        self._endpoints.append((subject, endpoint))

    @property
    def subjects(self) -> list[str]:
        return [subject for subject, _ in self._endpoints]

    async def start(self, nc: Client) -> None:
        self._nc = nc
        for subject, endpoint in self._endpoints:
            slots = asyncio.Semaphore(self._concurrency)
            self._subscriptions.append(await nc.subscribe(subject, queue=self._queue,
                                                          cb=self._dispatcher(endpoint, slots)))

    def _dispatcher(self, endpoint: Endpoint, slots: asyncio.Semaphore) -> Callable[[Msg], Awaitable[None]]:
        async def dispatch(msg: Msg) -> None:
            # nats-py calls this once per message, in order, per subscription: waiting for a slot
            # here holds further messages of this subject in the subscription's pending queue.
            await slots.acquire()
            task = asyncio.create_task(self._serve(endpoint, msg, slots))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

        return dispatch

    async def _serve(self, endpoint: Endpoint, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            message = InboundMessage(msg.subject, msg.data, msg.headers or {}, msg.reply)
            try:
                reply = await endpoint(message)
            except asyncio.CancelledError:
                raise              # the endpoint told its requester (worker_stopping) already
            except Exception as exc:
                log.error("unhandled error in the endpoint of %s: %r", msg.subject, exc)
                reply = internal_error()
            if reply is not None and msg.reply and self._nc is not None:
                try:
                    await self._nc.publish(msg.reply, reply.body, headers=reply.headers)
                except Exception as exc:  # connection lost: the requester's timeout (or heartbeat check) tells it
                    log.warning("reply to %s not sent: %r", msg.subject, exc)
        finally:
            slots.release()

    async def drain(self, timeout_s: float) -> None:
        """Withdraw interest (new requests go to other workers, or get "no responders" at once),
        let in-flight calls finish for up to `timeout_s`, then cancel the rest and wait for their
        endpoints to send the retryable reply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            # Returns once the messages already delivered to this worker are dispatched.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscription.drain(), max(0.0, deadline - loop.time()))
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
