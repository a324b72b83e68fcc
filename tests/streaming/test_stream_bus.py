"""`integrations.v1.execute.stream` from a plain nats-py client, following docs/STREAMING.md
only: subscribe to an inbox, publish the request with it as reply subject, read `start`,
`chunk`s and the terminal message, acknowledge chunks to `x-ack-to`."""

import asyncio

import orjson
import pytest

from contracts.execute import ExecuteSuccess
from contracts.streaming import StreamDelta
from tests.conftest import CALLER_KEY
from tests.streaming.helpers import wait_for

SUBJECT = "integrations.v1.execute.stream"
REQUEST = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}]}})


async def open_stream(nc, headers=None, body=REQUEST):
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)                     # subscribe before publishing
    await nc.publish(SUBJECT, body, reply=inbox, headers={"x-api-key": CALLER_KEY, **(headers or {})})
    return sub


async def next_message(sub, wait_s=5):
    while True:
        msg = await sub.next_msg(timeout=wait_s)
        if msg.headers.get("x-kind") != "heartbeat":
            return msg


async def test_a_plain_nats_client_consumes_a_stream(worker, nc, llmock):
    sub = await open_stream(nc)
    start = await next_message(sub)
    assert start.headers["x-kind"] == "start" and start.headers["x-status"] == "200"
    ack_to = start.headers["x-ack-to"]
    assert int(start.headers["x-stream-window"]) > 0 and start.headers["x-request-id"].startswith("req_")
    text, seq = [], 0
    while True:
        msg = await next_message(sub)
        seq += 1
        assert msg.headers["x-seq"] == str(seq)
        if msg.headers["x-kind"] != "chunk":
            break
        text.append(StreamDelta.model_validate_json(msg.data).content)
        await nc.publish(ack_to, b"", headers={"x-kind": "ack", "x-seq": msg.headers["x-seq"]})
    await sub.unsubscribe()
    assert msg.headers["x-kind"] == "end" and msg.headers["x-status"] == "200"
    final = ExecuteSuccess.model_validate_json(msg.data)
    assert final.data.content == "".join(text) and final.requestId == start.headers["x-request-id"]


async def test_a_refused_stream_gets_one_error_message(worker, nc):
    sub = await open_stream(nc, headers={"x-api-key": "wrong"})
    msg = await next_message(sub)
    await sub.unsubscribe()
    assert msg.headers["x-kind"] == "error" and msg.headers["x-status"] == "401"
    assert orjson.loads(msg.data)["category"] == "auth"


@pytest.mark.parametrize("how", ["silence", "cancel"])
async def test_a_requester_that_stops_acknowledging_or_cancels_ends_the_upstream(worker, nc, llmock, how):
    """Window of 2 and no acks: the worker stops after 2 chunks; after the ack timeout (1 s in
    the tests) or at once on `cancel`, it cancels the upstream request, which llmock holds open
    in a 20 s stall, and records partial usage."""
    seen = []

    async def observe(command, reply):
        seen.append((command.record, reply.status))

    worker.services.observers.append(observe)
    try:
        llmock.scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 5, "stall_seconds": 20})
        sub = await open_stream(nc, headers={"x-stream-window": "2"})
        start = await next_message(sub)
        chunks = [await next_message(sub), await next_message(sub)]
        assert [c.headers["x-seq"] for c in chunks] == ["1", "2"]
        if how == "cancel":
            await nc.publish(start.headers["x-ack-to"], b"", headers={"x-kind": "cancel"})
        with pytest.raises(asyncio.TimeoutError):
            await next_message(sub, wait_s=0.5)         # no third chunk without credit
        record, status = await wait_for(lambda: seen and seen[-1], timeout_s=5)
        await sub.unsubscribe()
    finally:
        worker.services.observers.remove(observe)
    assert status == 499 and record.partial and record.completion_tokens >= 2
    upstream = (await asyncio.to_thread(llmock.requests))[-1]
    # Recorded at all (llmock waits 2 s for in-flight requests) and not completed: the 20 s stall was cut.
    assert upstream["completed"] is False and (upstream["stall_waited"] or 0) < 5
