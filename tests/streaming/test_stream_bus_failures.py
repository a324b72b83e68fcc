"""The HTTP adapter's side of a stream when the bus misbehaves: no workers, a worker that dies
mid-stream, lost messages. A raw nats-py "worker" plays the broken part."""

import nats
import orjson
import pytest

from tests.http.test_http_adapter import lonely_gateway
from tests.streaming.helpers import json_events

SUBJECT = "integrations.v1.execute.stream"
BODY = {"provider": "openai", "operation": "chat.completions", "stream": True,
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}


async def test_no_workers_is_a_503_before_any_event():
    async with lonely_gateway() as (client, _, _):
        response = await client.post("/api/integrations/execute", json=BODY)
    assert response.status_code == 503 and response.json()["reason"] == "no_workers"


@pytest.mark.parametrize("script,reason", [
    ([1], "worker_lost"),          # one chunk, then the worker dies
    ([1, 3], "stream_interrupted"),  # chunk 2 never arrived
])
async def test_a_broken_stream_ends_with_an_error_event(script, reason):
    async with lonely_gateway(worker_silence_s=0.5) as (client, _, url):
        fake = await nats.connect(url)

        async def worker(msg):
            await fake.publish(msg.reply, b"", headers={"x-kind": "start", "x-status": "200",
                                                        "x-ack-to": "nowhere", "x-stream-window": "8"})
            for seq in script:
                await fake.publish(msg.reply, orjson.dumps({"content": f"piece {seq}"}),
                                   headers={"x-kind": "chunk", "x-seq": str(seq)})

        await fake.subscribe(SUBJECT, queue="integrations", cb=worker)
        await fake.flush()
        response = await client.post("/api/integrations/execute", json=BODY)
        await fake.close()
    assert response.status_code == 200, response.text
    events = json_events(response.text)
    assert events[0] == ("delta", {"content": "piece 1"})
    name, envelope = events[-1]
    assert name == "error" and envelope["reason"] == reason and envelope["retryable"] is True
