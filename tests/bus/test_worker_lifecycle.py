"""Stopping a worker: requests it holds finish (or get a retryable 503 when the drain timeout
runs out); requests that arrive while it drains are not swallowed."""

import asyncio
import tempfile
import time
from pathlib import Path

import nats
import orjson
import pytest

from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from tests.conftest import CALLER_KEY

SLOW = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                     "params": {"model": "gpt-4o-mini", "prompt": "slow"}})


@pytest.fixture
async def lone_worker(settings, request):
    """A worker alone on a NATS server of its own; `request.param` is its drain timeout."""
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="lifecycle-")) / "js")
    url = server.start()
    app = build_app(settings.model_copy(update={"nats_url": url, "drain_timeout_s": request.param}))
    await app.start()
    nc = await nats.connect(url)
    try:
        yield app, nc
    finally:
        await nc.close()
        server.stop()


@pytest.mark.parametrize("lone_worker", [10.0], indirect=True)
async def test_draining_worker_finishes_its_request_and_takes_no_new_ones(lone_worker, llmock):
    app, nc = lone_worker
    llmock.scenario({"type": "delay", "seconds": 1.5})
    in_flight = asyncio.create_task(nc.request("integrations.v1.execute", SLOW, timeout=10,
                                               headers={"x-api-key": CALLER_KEY}))
    await asyncio.sleep(0.4)
    stopping = asyncio.create_task(app.stop())
    await asyncio.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):  # not a silent drop and a timeout
        await nc.request("integrations.v1.execute", SLOW, timeout=5, headers={"x-api-key": CALLER_KEY})
    assert time.monotonic() - started < 1
    reply = await in_flight
    assert reply.headers["x-status"] == "200"
    await stopping


@pytest.mark.parametrize("lone_worker", [0.5], indirect=True)
async def test_a_request_cut_by_the_drain_timeout_gets_a_retryable_503(lone_worker, llmock):
    app, nc = lone_worker
    llmock.scenario({"type": "delay", "seconds": 4})
    in_flight = asyncio.create_task(nc.request("integrations.v1.execute", SLOW, timeout=10,
                                               headers={"x-api-key": CALLER_KEY}))
    await asyncio.sleep(0.4)
    started = time.monotonic()
    await app.stop()
    reply = await in_flight
    body = orjson.loads(reply.data)
    assert reply.headers["x-status"] == "503" and body["reason"] == "worker_stopping" and body["retryable"]
    assert time.monotonic() - started < 3
