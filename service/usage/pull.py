"""Batches from a durable JetStream pull consumer, fast.

nats-py's `fetch()` awaits each message of a batch separately (a timer per message), which caps
a writer at about 12,000 messages/s here; a subscription callback that collects the messages of
one outstanding pull request reaches about 45,000 (docs/BENCHMARKS.md). One request of `batch`
messages is outstanding at a time and is renewed as soon as the caller takes what arrived, so the
next batch streams in while the caller writes the previous one.

The server ends a pull request in exactly one way: its last message, or a status message (408
request expired; 409 for anything else, e.g. the consumer was deleted). A request that goes
silent (the server restarted) is abandoned after its expiry.
"""

import asyncio
import contextlib
import json
import time

from nats.aio.client import Client
from nats.aio.msg import Msg

REQUEST_EXPIRES_S = 5.0
_EXPIRED = ("404", "408")


class ConsumerGone(Exception):
    """The server answered a pull request with an error status (consumer or stream deleted)."""


class PullBatches:
    def __init__(self, nc: Client, stream: str, consumer: str, batch: int) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._batch = batch
        self._inbox = nc.new_inbox()
        self._sub = None
        self._buffer: list[Msg] = []
        self._outstanding = 0               # messages the open request may still deliver
        self._requested_at = 0.0
        self._error: str | None = None
        self._arrived = asyncio.Event()     # something arrived (the first message, or the end)
        self._full = asyncio.Event()        # the batch is complete or the request ended
        self._closing = False               # no new pull requests; take() returns what is in hand

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    def close(self) -> None:
        """Stop asking for messages and wake a waiting take(): the caller commits what it has."""
        self._closing = True
        self._arrived.set()
        self._full.set()

    async def stop(self) -> None:
        """Withdraw interest (the server delivers nothing more on a pull request whose reply
        subject has no subscriber), then hand back what arrived untaken: a nak redelivers it to the
        next writer at once, where an unacknowledged message would wait out the ack wait."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
        untaken, self._buffer = self._buffer, []
        for msg in untaken:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _request(self) -> None:
        if self._closing:
            return
        if self._outstanding and time.monotonic() - self._requested_at < REQUEST_EXPIRES_S + 1:
            return
        self._outstanding = self._batch
        self._requested_at = time.monotonic()
        body = json.dumps({"batch": self._batch, "expires": int(REQUEST_EXPIRES_S * 1e9)}).encode()
        await self._nc.publish(self._api, body, reply=self._inbox)

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            self._outstanding -= 1
        elif status == "100":               # idle heartbeat (not requested; ignore)
            return
        else:
            self._outstanding = 0
            description = msg.headers.get("Description", "")
            if status not in _EXPIRED and "Exceeded" not in description:  # MaxAckPending etc. just end it
                self._error = f"{status} {description}".strip()
        self._arrived.set()
        if len(self._buffer) >= self._batch or not self._outstanding:
            self._full.set()

    async def take(self, linger_s: float, idle_s: float) -> list[Msg]:
        """The messages that arrived: waits up to `idle_s` for the first, then up to `linger_s`
        for the batch to fill (one timer each, not one per message). [] when nothing came.
        Raises ConsumerGone."""
        await self._request()
        if not self._buffer and not self._error and not self._closing:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), idle_s)
        if self._buffer and len(self._buffer) < self._batch and self._outstanding and not self._closing:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), linger_s)
        if self._error:
            error, self._error = self._error, None
            raise ConsumerGone(error)
        taken, self._buffer = self._buffer, []
        await self._request()               # the next batch streams in while the caller writes
        return taken
