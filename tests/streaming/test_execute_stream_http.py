"""`"stream": true` on POST /api/integrations/execute: server-sent events through a real HTTP
server, a real bus and worker, llmock and the HuggingFace fake as upstreams, including
llmock's injected stream faults and a client that hangs up mid-stream."""

import asyncio

import httpx
import orjson
import pytest

from contracts.execute import ExecuteSuccess
from contracts.streaming import StreamDelta
from tests.conftest import CALLER_KEY
from tests.streaming.helpers import json_events, wait_for

PATH = "/api/integrations/execute"


def chat(provider="openai", operation="chat.completions", **params):
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", [{"role": "user", "content": "Tell me a story"}])
    return {"provider": provider, "operation": operation, "params": params, "stream": True}


@pytest.fixture
async def client(gateway_url):
    async with httpx.AsyncClient(base_url=gateway_url, headers={"x-api-key": CALLER_KEY}, timeout=20) as c:
        yield c


async def test_deltas_then_a_done_event_with_the_normalized_reply(client, llmock, recorded):
    response = await client.post(PATH, json=chat())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = json_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 3
    for _, data in events[:-1]:
        StreamDelta.model_validate(data)
    final = ExecuteSuccess.model_validate(events[-1][1])
    assert final.data.content == "".join(d["content"] for _, d in events[:-1])
    assert final.data.finishReason == "stop" and final.data.usage.completionTokens > 0
    assert response.headers["x-request-id"] == final.requestId
    sent = llmock.requests()[-1]
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["completed"] is True
    record, reply = await wait_for(lambda: recorded and recorded[-1])
    assert record.streamed and not record.partial and not record.usage_estimated
    assert reply.status == 200 and record.total_tokens == final.data.usage.totalTokens


async def test_tool_call_fragments_are_assembled(client, llmock):
    llmock.scenario({"type": "reply", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo, Norway"}}]})
    response = await client.post(PATH, json=chat(tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]))
    events = json_events(response.text)
    fragments = [d["toolCalls"][0] for name, d in events if name == "delta" and "toolCalls" in d]
    assert len(fragments) > 1 and fragments[0]["function"]["name"] == "get_weather"
    final = events[-1][1]["data"]
    assert final["finishReason"] == "tool_calls"
    assert orjson.loads(final["toolCalls"][0]["function"]["arguments"]) == {"city": "Oslo, Norway"}


async def test_failures_before_the_stream_are_plain_http_errors(client):
    response = await client.post(PATH, json=chat(), headers={"x-api-key": "wrong"})
    assert response.status_code == 401 and response.json()["category"] == "auth"
    response = await client.post(PATH, json={**chat(), "operation": "embeddings",
                                             "params": {"model": "m", "input": "x"}})
    assert response.status_code == 400 and response.json()["reason"] == "stream_unsupported"
    response = await client.post(PATH, json=chat(foo=1))
    assert response.status_code == 400 and "params.foo" in response.json()["error"]


async def test_upstream_http_error_before_the_stream_keeps_its_status(client, llmock):
    llmock.scenario({"type": "fail", "status": 429, "retry_after": 4})
    response = await client.post(PATH, json=chat())
    assert response.status_code == 429 and response.headers["retry-after"] == "4"
    assert response.json()["category"] == "rate_limit"


@pytest.mark.parametrize("fault,category,reason", [
    ({"kind": "disconnect", "after_chunks": 3}, "network", "stream_interrupted"),
    ({"kind": "truncate", "after_chunks": 3}, "provider", "stream_interrupted"),
    ({"kind": "malformed", "after_chunks": 2}, "provider", "upstream_invalid_response"),
])
async def test_a_stream_that_breaks_upstream_ends_with_an_error_event(client, llmock, recorded, fault, category,
                                                                       reason):
    llmock.scenario({"type": "stream_fault", **fault})
    response = await client.post(PATH, json=chat())
    assert response.status_code == 200
    events = json_events(response.text)
    assert "done" not in [name for name, _ in events]
    name, envelope = events[-1]
    assert name == "error" and envelope["success"] is False
    assert envelope["category"] == envelope["errorCategory"] == category and envelope["reason"] == reason
    assert envelope["provider"] == "openai" and envelope["requestId"]
    record, reply = await wait_for(lambda: recorded and recorded[-1])
    assert record.partial and record.streamed and reply.status >= 400
    assert record.completion_tokens >= len([n for n, _ in events if n == "delta"])


async def test_a_client_that_hangs_up_cancels_the_upstream_and_usage_is_partial(gateway_url, llmock, recorded):
    llmock.scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 3, "stall_seconds": 20})
    async with httpx.AsyncClient(base_url=gateway_url, headers={"x-api-key": CALLER_KEY}, timeout=20) as client:
        async with client.stream("POST", PATH, json=chat()) as response:
            seen = 0
            async for line in response.aiter_lines():
                if line.startswith("event: delta"):
                    seen += 1
                    if seen == 2:
                        break  # leaving the block closes the connection mid-stream
    journal = await asyncio.to_thread(llmock.requests)
    upstream = journal[-1]
    # Recorded at all (llmock waits 2 s for in-flight requests) and not completed: the 20 s stall was cut.
    assert upstream["completed"] is False and (upstream["stall_waited"] or 0) < 5
    record, reply = await wait_for(lambda: recorded and recorded[-1])
    assert record.partial and record.completion_tokens > 0 and record.prompt_tokens > 0
    assert reply.status == 499 and orjson.loads(reply.body)["reason"] == "client_disconnected"


async def test_huggingface_router_stream(client, hf_fake):
    response = await client.post(PATH, json=chat("huggingface", model="meta-llama/Llama-3.2-3B-Instruct"))
    events = json_events(response.text)
    final = events[-1][1]["data"]
    assert final["content"] == "hf says: Tell me a story"
    assert final["usage"] == {"promptTokens": 7, "completionTokens": 6, "totalTokens": 13}
    assert hf_fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("fault,status,category", [
    ({"kind": "disconnect", "after_chunks": 1}, 502, "network"),   # after the role chunk, before any text
    ({"kind": "truncate", "after_chunks": 0}, 502, "provider"),
])
async def test_a_stream_that_breaks_before_any_output_is_a_plain_http_error(client, llmock, recorded, fault,
                                                                              status, category):
    """The stream is committed (200) with its first output; before that a failure keeps its status."""
    llmock.scenario({"type": "stream_fault", **fault})
    response = await client.post(PATH, json=chat())
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["category"] == category and body["reason"] == "stream_interrupted"
    record, _ = await wait_for(lambda: recorded and recorded[-1])
    assert record.streamed and record.partial


async def test_anthropic_streams_messages_api_events(client, llmock, recorded):
    model = "claude-haiku-4-5-20251001"
    response = await client.post(PATH, json=chat("anthropic", model=model, maxTokens=64))
    assert response.status_code == 200
    events = json_events(response.text)
    final = ExecuteSuccess.model_validate(events[-1][1])
    assert events[-1][0] == "done" and final.data.provider == "anthropic" and final.data.model == model
    assert final.data.content == "".join(d.get("content", "") for name, d in events if name == "delta") != ""
    assert final.data.finishReason == "stop" and final.data.usage.promptTokens > 0
    assert final.data.usage.completionTokens > 0 and not final.data.metadata.get("usageEstimated")
    assert final.data.metadata["id"].startswith("msg_")
    sent = llmock.requests()[-1]
    assert sent["path"] == "/anthropic/v1/messages" and sent["body"]["stream"] is True
    assert sent["body"]["max_tokens"] == 64 and "stream_options" not in sent["body"]
    record, _ = await wait_for(lambda: recorded and recorded[-1])
    assert record.streamed and record.integration == "anthropic" and not record.usage_estimated

    llmock.scenario({"type": "reply", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]})
    response = await client.post(PATH, json=chat("anthropic", model=model, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]))
    final = json_events(response.text)[-1][1]["data"]
    (call,) = final["toolCalls"]
    assert final["finishReason"] == "tool_calls" and call["id"].startswith("toolu")
    assert call["function"]["name"] == "get_weather" and orjson.loads(call["function"]["arguments"]) == {
        "city": "Oslo"}
