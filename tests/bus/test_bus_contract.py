"""Bus-level guarantees: every failure is a reply, large payloads travel by claim check,
no workers is an immediate answer, long requests send heartbeats to requesters that opt in."""

import asyncio

import nats
import orjson
import pytest
from faststream.nats import NatsMessage

from handlers.app import build_broker
from handlers.bus import as_message
from tests.conftest import CALLER_KEY


async def test_a_subscriber_that_raises_still_replies(settings):
    broker = build_broker(settings, "test-raiser")

    @broker.subscriber("test.raises", decoder=as_message)
    async def raises(message: NatsMessage):
        raise ValueError("bug in a handler")

    await broker.start()
    try:
        nc = await nats.connect(settings.nats_url)
        msg = await nc.request("test.raises", b"{}", timeout=5)
        await nc.close()
    finally:
        await broker.stop()
    body = orjson.loads(msg.data)
    assert msg.headers["x-status"] == "500" and body["category"] == "internal" and body["success"] is False


async def test_no_responders_is_immediate(nc):
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("integrations.v1.nobody-serves-this", b"{}", timeout=5)


async def test_large_request_and_reply_travel_by_claim_check(worker, nc, hf_fake):
    assert nc.max_payload == 1024 * 1024  # the test server keeps NATS's default
    image = "data:image/png;base64," + "A" * (2 * 1024 * 1024)
    body = orjson.dumps({"provider": "huggingface", "operation": "image.description", "params": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": image}}]}]}})
    js = nc.jetstream()
    store = await js.object_store("integrations-payloads")  # created by the workers
    await store.put("req-big", body)
    msg = await nc.request("integrations.v1.execute", b"", timeout=15,
                           headers={"x-api-key": CALLER_KEY, "x-payload-ref": "req-big"})
    assert msg.headers["x-status"] == "200", msg.data
    sent = hf_fake.requests[-1]["body"]["messages"][0]["content"][1]["image_url"]["url"]
    assert sent == image

    many = [f"input number {i}" for i in range(150)]  # 150 × 1536 floats: well over 1 MB of JSON
    msg = await nc.request("integrations.v1.execute", orjson.dumps({
        "provider": "openai", "operation": "embeddings", "params": {"model": "text-embedding-3-small",
                                                                    "input": many}}),
        timeout=15, headers={"x-api-key": CALLER_KEY})
    assert msg.data == b"" and msg.headers["x-status"] == "200"
    reply = await store.get(msg.headers["x-payload-ref"])
    assert len(orjson.loads(reply.data)["data"]["embeddings"]) == 150


async def test_heartbeats_only_for_requesters_that_opt_in(worker, nc, llmock):
    llmock.scenario({"type": "delay", "seconds": 1.6})
    inbox = nc.new_inbox()
    received: list = []

    async def collect(msg):
        received.append(msg)

    sub = await nc.subscribe(inbox, cb=collect)
    await nc.publish("integrations.v1.execute", orjson.dumps({
        "provider": "openai", "operation": "chat.completions", "params": {"model": "m", "prompt": "x"}}),
        reply=inbox, headers={"x-api-key": CALLER_KEY, "x-progress": "1"})
    for _ in range(60):
        if received and received[-1].headers.get("x-status"):
            break
        await asyncio.sleep(0.1)
    await sub.unsubscribe()
    kinds = [m.headers.get("x-kind") for m in received]
    assert kinds[-1] is None and received[-1].headers["x-status"] == "200"
    assert kinds.count("heartbeat") >= 2  # heartbeat_s is 0.5 in the test settings

    llmock.scenario({"type": "delay", "seconds": 1.2})
    msg = await nc.request("integrations.v1.execute", orjson.dumps({
        "provider": "openai", "operation": "chat.completions", "params": {"model": "m", "prompt": "x"}}),
        timeout=10, headers={"x-api-key": CALLER_KEY})
    assert msg.headers["x-status"] == "200"  # a plain request() sees only the final reply


async def test_expired_requests_are_not_run(worker, nc, llmock):
    before = len(llmock.requests())
    msg = await nc.request("integrations.v1.execute", orjson.dumps({
        "provider": "openai", "operation": "chat.completions", "params": {"model": "m", "prompt": "x"}}),
        timeout=5, headers={"x-api-key": CALLER_KEY, "x-start-by": "1000"})
    assert msg.headers["x-status"] == "503" and orjson.loads(msg.data)["reason"] == "queue_timeout"
    assert len(llmock.requests()) == before


async def test_an_unknown_payload_reference_is_a_400(worker, nc):
    msg = await nc.request("integrations.v1.execute", b"", timeout=5,
                           headers={"x-api-key": CALLER_KEY, "x-payload-ref": "no-such-object"})
    body = orjson.loads(msg.data)
    assert msg.headers["x-status"] == "400" and body["reason"] == "payload_not_found"


async def test_topk_with_messages_is_rejected_in_tgi_mode(tmp_path, hf_fake):
    from service.commands import Command, run_command
    from service.container import Services
    from service.settings import Settings

    services = Services(Settings(_env_file=None, data_dir=tmp_path, api_keys=CALLER_KEY, huggingface_api_key="k",
                                 huggingface_base_url=hf_fake.url, huggingface_text_generation_api="tgi"))
    body = {"provider": "huggingface", "operation": "text.generation",
            "params": {"model": "m", "messages": [{"role": "user", "content": "x"}], "topK": 3}}
    reply = await run_command(services.execute, Command(orjson.dumps(body), {"x-api-key": CALLER_KEY}, "r"))
    await services.close()
    assert reply.status == 400 and b"topK" in reply.body
