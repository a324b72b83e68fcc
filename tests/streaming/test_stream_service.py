"""The streaming pipeline without the bus, for configurations the shared worker does not use:
TGI's /generate_stream, and a short upstream timeout against a stalled stream."""

import contextlib

import orjson
import pytest

from service.commands import Command
from service.errors import GatewayError
from tests.conftest import CALLER_KEY
from tests.fakes.huggingface import API_KEY as HF_KEY
from tests.service.test_execute_service import make_services


async def stream_all(services, body: dict):
    command = Command(orjson.dumps(body), {"x-api-key": CALLER_KEY}, "req_stream")
    stream = await services.execute.open_stream(command)
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            deltas = [orjson.loads(b) async for b in chunks]
        _, end, _ = stream.completed()
        return command, deltas, orjson.loads(end)
    finally:
        stream.close()


async def test_tgi_generate_stream(tmp_path, hf_fake):
    services = make_services(tmp_path, huggingface_base_url=hf_fake.url, huggingface_api_key=HF_KEY,
                             huggingface_text_generation_api="tgi")
    try:
        command, deltas, final = await stream_all(services, {
            "provider": "huggingface", "operation": "text.generation", "stream": True,
            "params": {"model": "bigscience/bloom", "prompt": "Once", "maxTokens": 5}})
    finally:
        await services.close()
    assert hf_fake.requests[-1]["path"] == "/generate_stream"
    assert [d["content"] for d in deltas] == [" continued", ":", " once", " upon"]   # no special </s>
    data = final["data"]
    assert data["content"] == " continued: once upon" and data["finishReason"] == "stop"
    assert data["usage"]["completionTokens"] == 5 and data["metadata"]["usageEstimated"] is True
    assert command.record.usage_estimated and command.record.completion_tokens == 5


async def test_a_stalled_stream_times_out_between_chunks(tmp_path, llmock):
    services = make_services(tmp_path, openai_base_url=llmock.base_url, openai_api_key="sk-x",
                             upstream_timeout_s=0.3)
    llmock.scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 5})
    try:
        with pytest.raises(GatewayError) as caught:
            await stream_all(services, {"provider": "openai", "operation": "chat.completions", "stream": True,
                                        "params": {"model": "m", "prompt": "x"}})
    finally:
        await services.close()
    assert caught.value.category == "timeout" and caught.value.reason == "upstream_timeout"
    assert "in the middle of the stream" in caught.value.message
