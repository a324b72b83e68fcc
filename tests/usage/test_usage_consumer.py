"""The store writers' durable consumer follows INTEGRATIONS_USAGE_ACK_WAIT_S: created with it,
and edited in place when a later writer starts with another value."""

import asyncio
import tempfile
import time
from pathlib import Path

import nats
from nats.js.errors import NotFoundError

from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from tests.usage.conftest import STREAM, gateway_settings


async def consumer_ack_wait(js, wanted: float, timeout_s: float = 10) -> float | None:
    """The consumer's ack wait once it is `wanted`, or what it is when `timeout_s` ran out (the
    writer creates or edits the consumer when it starts consuming, shortly after the app starts)."""
    deadline = time.monotonic() + timeout_s
    got = None
    while got != wanted and time.monotonic() < deadline:
        try:
            got = (await js.consumer_info(STREAM, "usage-store")).config.ack_wait
        except NotFoundError:
            got = None
        if got != wanted:
            await asyncio.sleep(0.05)
    return got


async def test_the_consumer_ack_wait_follows_the_setting(llmock):
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="usage-ackwait-")) / "js")
    url = server.start()
    data_dir = Path(tempfile.mkdtemp(prefix="usage-ackwait-data-"))
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        seen = []
        for ack_wait_s in (60.0, 7.0):
            app = build_app(gateway_settings("sqlite", url, data_dir, llmock.base_url, usage_ack_wait_s=ack_wait_s))
            async with app:
                seen.append(await consumer_ack_wait(js, wanted=ack_wait_s))
        assert seen == [60.0, 7.0]
    finally:
        await nc.close()
        server.stop()
