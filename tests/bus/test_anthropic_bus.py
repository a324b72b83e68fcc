"""Anthropic over `integrations.v1.execute`, against llmock's Messages API (`/anthropic/v1/messages`).

What the gateway sent is read back from llmock's journal, so the conversions are checked on
the wire, not on the adapter's return value."""

import orjson
import pytest

from contracts.execute import ExecuteSuccess
from tests.bus.test_execute_bus import assert_envelope, execute
from tests.conftest import ANTHROPIC_KEY

MODEL = "claude-haiku-4-5-20251001"
PNG = "iVBORw0KGgo="
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def anthropic(operation="chat.completions", **params):
    params.setdefault("model", MODEL)
    return {"provider": "anthropic", "operation": operation, "params": params}


def sent(llmock) -> dict:
    record = llmock.requests()[-1]
    assert record["path"] == "/anthropic/v1/messages"
    return record["body"]


async def test_chat_with_system_prompts_and_max_tokens_from_the_model_table(worker, nc, llmock):
    status, body, _ = await execute(nc, anthropic(systemPrompt="Be terse.", stop="END", messages=[
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Hello"}]))
    assert status == 200, body
    ExecuteSuccess.model_validate(body)
    data = body["data"]
    assert data["provider"] == "anthropic" and data["model"] == MODEL and data["content"]
    assert data["finishReason"] == "stop" and data["metadata"]["id"].startswith("msg_")
    assert data["usage"]["totalTokens"] == data["usage"]["promptTokens"] + data["usage"]["completionTokens"] > 0
    assert sent(llmock) == {
        "model": MODEL, "max_tokens": 8192, "system": "Be terse.\n\nYou are a weather bot.",
        "messages": [{"role": "user", "content": "Hello"}], "stop_sequences": ["END"],
    }


async def test_tool_round_trip(worker, nc, llmock):
    question = {"role": "user", "content": "What is the weather in Oslo?"}
    status, body, _ = await execute(nc, anthropic(messages=[question], tools=[WEATHER_TOOL], toolChoice="auto"))
    assert status == 200, body
    first = body["data"]
    assert first["finishReason"] == "tool_calls"
    (call,) = first["toolCalls"]
    assert call["id"].startswith("toolu") and call["function"]["name"] == "get_weather"
    arguments = orjson.loads(call["function"]["arguments"])
    assert sent(llmock)["tools"] == [{"name": "get_weather", "description": "Current weather for a city",
                                      "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert sent(llmock)["tool_choice"] == {"type": "auto"}

    # The caller runs the tool and sends the conversation back in OpenAI shape.
    status, body, _ = await execute(nc, anthropic(tools=[WEATHER_TOOL], messages=[
        question,
        {"role": "assistant", "content": first["content"] or None, "tool_calls": first["toolCalls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": "3°C and snowing"}]))
    assert status == 200, body
    assert body["data"]["finishReason"] == "stop" and "toolCalls" not in body["data"]
    assert sent(llmock)["messages"] == [
        question,
        {"role": "assistant", "content": [{"type": "tool_use", "id": call["id"], "name": "get_weather",
                                           "input": arguments}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                      "content": "3°C and snowing"}]},
    ]


async def test_image_description_with_data_and_http_urls(worker, nc, llmock):
    status, body, _ = await execute(nc, anthropic("image.description", maxTokens=200, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "What pattern is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/board.jpg"}}]}]))
    assert status == 200, body
    assert sent(llmock)["messages"][0]["content"] == [
        {"type": "text", "text": "What pattern is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/board.jpg"}},
    ]
    assert sent(llmock)["max_tokens"] == 200

    status, body, _ = await execute(nc, anthropic("image.description", prompt="describe"))
    assert status == 400 and body["reason"] == "invalid_request" and "image" in body["error"]


async def test_native_blocks_pass_through_the_messages_operation(worker, nc, llmock):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGODlh"}}
    cached = {"type": "text", "text": "Context.", "cache_control": {"type": "ephemeral"}}
    status, body, _ = await execute(nc, anthropic("messages", messages=[
        {"role": "system", "content": [cached]},
        {"role": "user", "content": [image, {"type": "text", "text": "Which format?"}]}]))
    assert status == 200, body
    assert sent(llmock)["system"] == [cached]
    assert sent(llmock)["messages"] == [{"role": "user", "content": [image, {"type": "text", "text": "Which format?"}]}]


@pytest.mark.parametrize("behavior,status,category,retryable,reason", [
    ({"type": "fail", "status": 529, "retry_after": 2}, 503, "provider", True, "upstream_overloaded"),
    ({"type": "fail", "status": 429, "retry_after": 3}, 429, "rate_limit", True, "upstream_error"),
    ({"type": "fail", "status": 401}, 502, "auth", False, "provider_rejected_credentials"),
    ({"type": "fail", "status": 400, "message": "prompt is too long"}, 400, "validation", False, "upstream_error"),
    ({"type": "fail", "status": 404}, 400, "validation", False, "model_not_found"),
    ({"type": "fail", "status": 413}, 413, "validation", False, "body_too_large"),
    ({"type": "fail", "status": 500}, 502, "provider", True, "upstream_error"),
])
async def test_anthropic_errors_are_classified(worker, nc, llmock, behavior, status, category, retryable, reason):
    llmock.scenario(behavior)
    got, body, headers = await execute(nc, anthropic(prompt="hi"))
    assert got == status, body
    assert_envelope(body, category)
    assert body["retryable"] is retryable and body["reason"] == reason and body["provider"] == "anthropic"
    assert body["upstream"]["statusCode"] == behavior["status"] and body["upstream"]["code"].endswith(
        ("_error", "request_too_large"))
    if behavior.get("retry_after"):
        assert headers["retry-after"] == str(behavior["retry_after"])
    if behavior.get("message"):
        assert behavior["message"] in body["error"]
    assert ANTHROPIC_KEY not in orjson.dumps(body).decode()


async def test_parameters_and_operations_anthropic_does_not_have_are_400(worker, nc, llmock):
    status, body, _ = await execute(nc, anthropic(prompt="x", seed=1, responseFormat="json"))
    assert status == 400 and body["reason"] == "unsupported_parameter"
    assert "responseFormat" in body["error"] and "seed" in body["error"]
    status, body, _ = await execute(nc, anthropic("embeddings", input="x"))
    assert status == 400 and body["reason"] == "unsupported_operation"
    assert llmock.requests() == []  # nothing reached the provider
