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
    """A worker alone on a NATS server of its own; `request.param` is its drain timeout and the
    lane it takes requests on (both lanes drain the same way: handlers/lane.py)."""
    drain_timeout_s, lane = request.param
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="lifecycle-")) / "js")
    url = server.start()
    app = build_app(settings.model_copy(update={"nats_url": url, "drain_timeout_s": drain_timeout_s}), lane=lane)
    await app.start()
    nc = await nats.connect(url)
    try:
        yield app, nc
    finally:
        await nc.close()
        server.stop()


@pytest.mark.parametrize("lone_worker", [(10.0, "direct"), (10.0, "faststream")], indirect=True)
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


@pytest.mark.parametrize("lone_worker", [(0.5, "direct"), (0.5, "faststream")], indirect=True)
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


async def test_a_starting_worker_answers_every_request_it_takes(settings):
    """Requests keep arriving while a worker starts: each one it takes, from its very first,
    gets its real answer (here a 401 for an unknown key, which needs the claim-check store and,
    for streams, the flow-control state), never a 500 or silence."""
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="startup-")) / "js")
    url = server.start()
    nc = await nats.connect(url)
    app = build_app(settings.model_copy(update={"nats_url": url}))
    started = asyncio.Event()
    answers: dict[str, list[str]] = {"execute": [], "stream": []}
    failures: list[str] = []
    headers = {"x-api-key": "not-a-key"}

    async def execute() -> None:
        try:
            msg = await nc.request("integrations.v1.execute", SLOW, timeout=3, headers=headers)
        except nats.errors.NoRespondersError:
            return
        answers["execute"].append(msg.headers.get("x-status"))

    async def stream() -> None:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        try:
            await nc.publish("integrations.v1.execute.stream", SLOW, reply=inbox, headers=headers)
            while True:
                msg = await sub.next_msg(timeout=3)
                if msg.headers and msg.headers.get("Status") == "503" and not msg.data:
                    return                                 # no responders yet
                if msg.headers.get("x-kind") != "heartbeat":
                    answers["stream"].append(f"{msg.headers.get('x-kind')} {msg.headers.get('x-status')}")
                    return
        finally:
            await sub.unsubscribe()

    async def hammer(send) -> None:
        after_start = 0
        while after_start < 5:
            try:
                await send()
            except Exception as exc:  # a timeout: the request was swallowed
                failures.append(repr(exc))
            if started.is_set():
                after_start += 1
            await asyncio.sleep(0.001)

    try:
        hammers = [asyncio.create_task(hammer(send)) for send in (execute, stream) for _ in range(6)]
        await asyncio.sleep(0.05)
        await app.start()
        started.set()
        await asyncio.wait_for(asyncio.gather(*hammers), 30)
        assert not failures
        assert answers["execute"] and set(answers["execute"]) == {"401"}
        assert answers["stream"] and set(answers["stream"]) == {"error 401"}
    finally:
        await app.stop()
        await nc.close()
        server.stop()


@pytest.mark.parametrize("lone_worker", [(0.5, "direct"), (0.5, "faststream")], indirect=True)
async def test_a_stream_cut_by_the_drain_timeout_ends_with_a_retryable_503(lone_worker, llmock):
    app, nc = lone_worker
    llmock.scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 5})
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)

    async def next_message():
        while True:
            msg = await sub.next_msg(timeout=5)
            if msg.headers["x-kind"] != "heartbeat":
                return msg

    await nc.publish("integrations.v1.execute.stream", SLOW, reply=inbox, headers={"x-api-key": CALLER_KEY})
    start = await next_message()
    chunk = await next_message()                          # the one text chunk before the stall
    assert start.headers["x-kind"] == "start" and chunk.headers["x-kind"] == "chunk"
    await nc.publish(start.headers["x-ack-to"], b"", headers={"x-kind": "ack", "x-seq": chunk.headers["x-seq"]})
    started = time.monotonic()
    await app.stop()
    end = await next_message()
    body = orjson.loads(end.data)
    assert end.headers["x-kind"] == "error" and end.headers["x-status"] == "503"
    assert end.headers["x-seq"] == str(int(chunk.headers["x-seq"]) + 1)
    assert body["reason"] == "worker_stopping" and body["retryable"]
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("lone_worker", [(5.0, "direct"), (5.0, "faststream")], indirect=True)
async def test_a_bug_in_an_endpoint_still_answers_with_the_envelope(lone_worker, monkeypatch):
    """Whatever escapes an endpoint becomes a 500 in the error envelope on either lane, so the
    requester does not wait out its timeout."""
    app, nc = lone_worker

    async def broken(command):
        raise RuntimeError("a bug")

    # run_command turns handler errors into the envelope itself; break the glue around it.
    monkeypatch.setattr("handlers.bus.run_observed", lambda *a, **k: broken(None))
    started = time.monotonic()
    reply = await nc.request("integrations.v1.execute", SLOW, timeout=5, headers={"x-api-key": CALLER_KEY})
    assert time.monotonic() - started < 2
    body = orjson.loads(reply.data)
    assert reply.headers["x-status"] == "500" and body["reason"] == "internal_error" and body["success"] is False
    await app.stop()
