"""Anthropic Messages API mapping, both directions (no network)."""

import pytest

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers import anthropic_format
from service.providers.anthropic import AnthropicAdapter
from service.providers.base import OperationSpec
from service.providers.errors import error_fields

CHAT = OperationSpec("chat.completions", "chat", frozenset())
PNG = "iVBORw0KGgo="


def params(**kw) -> ExecuteParams:
    return ExecuteParams.model_validate({"model": "claude-haiku-4-5-20251001", **kw})


def adapter() -> AnthropicAdapter:
    return AnthropicAdapter("https://api.anthropic.com", "2023-06-01", 4096)


def build(**kw) -> dict:
    return adapter().build(CHAT, params(**kw), "sk-ant-test").body


def test_request_url_headers_and_max_tokens_from_the_model_table():
    call = adapter().build(CHAT, params(prompt="hi"), "sk-ant-test")
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    assert call.body == {"model": "claude-haiku-4-5-20251001", "max_tokens": 8192,
                         "messages": [{"role": "user", "content": "hi"}]}
    assert build(prompt="hi", maxTokens=50)["max_tokens"] == 50
    assert build(prompt="hi", model="claude-3-haiku-20240307")["max_tokens"] == 4096   # the model's own limit
    assert build(prompt="hi", model="claude-unknown-9")["max_tokens"] == 4096          # ANTHROPIC_DEFAULT_MAX_TOKENS


def test_system_prompt_from_parameters_and_system_and_developer_messages_in_order():
    body = build(systemPrompt="Be terse.", messages=[
        {"role": "system", "content": "You are Claude."},
        {"role": "user", "content": "Hello"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "system", "content": "   "},
    ])
    assert body["system"] == "Be terse.\n\nYou are Claude.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    assert build(instructions="Only JSON.", prompt="x")["system"] == "Only JSON."


def test_system_blocks_with_cache_control_are_kept_as_blocks():
    cached = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    body = build(messages=[{"role": "system", "content": [cached]}, {"role": "user", "content": "q"}])
    assert body["system"] == [cached]


def test_openai_parts_become_native_blocks_and_native_blocks_pass_through():
    native_image = {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}}
    body = build(messages=[{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "input_image", "image_url": "data:;base64,AAAA"},
        native_image,
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]}])
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        native_image,
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
         "title": "a.pdf"},
    ]


def test_full_tool_round_trip_in_openai_shape():
    body = build(
        tools=[{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}},
               {"name": "native_tool", "input_schema": {"type": "object", "properties": {}}}],
        toolChoice={"type": "function", "function": {"name": "get_weather"}},
        messages=[
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": "{\"city\": \"Oslo\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": "{\"city\": \"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "3°C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "24°C"}],
             "is_error": True},
            {"role": "user", "content": "And tomorrow?"},
        ])
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather by city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "native_tool", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3°C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "24°C"}],
             "is_error": True},
            {"type": "text", "text": "And tomorrow?"}]},
    ]


def test_native_tool_use_and_tool_result_blocks_pass_through_untouched():
    use = {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": 1}}
    result = {"type": "tool_result", "tool_use_id": "toolu_9", "content": [{"type": "text", "text": "42"}]}
    body = build(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": [use]},
                           {"role": "user", "content": [result]}])
    assert body["messages"][1]["content"] == [use] and body["messages"][2]["content"] == [result]


@pytest.mark.parametrize("choice,parallel,expected", [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "tool", "name": "t"}, None, {"type": "tool", "name": "t"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tool_choice_mapping(choice, parallel, expected):
    kw = {"toolChoice": choice} if choice is not None else {}
    if parallel is not None:
        kw["parallelToolCalls"] = parallel
    body = build(prompt="x", tools=[{"name": "t", "input_schema": {"type": "object"}}], **kw)
    assert body["tool_choice"] == expected


def test_stop_is_always_a_list_and_sampling_parameters_map():
    body = build(prompt="x", stop="END", topP=0.5, topK=20, temperature=0.3, user="u-1")
    assert body["stop_sequences"] == ["END"]
    assert (body["top_p"], body["top_k"], body["temperature"]) == (0.5, 20, 0.3)
    assert body["metadata"] == {"user_id": "u-1"}


@pytest.mark.parametrize("kw,fragment", [
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input_audio"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "http(s)"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}]},
     "base64"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}, "valid JSON"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "at least one user"),
    ({"prompt": "x", "toolChoice": "required"}, "needs tools"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]},
                   {"role": "user", "content": "x"}]}, "only be text"),
])
def test_what_anthropic_cannot_take_is_a_400_naming_it(kw, fragment):
    with pytest.raises(GatewayError) as err:
        adapter().build(CHAT, params(**kw), "k")
    assert err.value.status == 400 and err.value.reason == Reason.INVALID_REQUEST and fragment in err.value.message


def test_response_normalisation():
    data = adapter().parse(CHAT, params(prompt="x"), {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "thinking", "thinking": "weather needed", "signature": "s"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 20},
    })
    assert data == {
        "provider": "anthropic", "model": "claude-haiku-4-5-20251001", "content": "Let me check.",
        "usage": {"promptTokens": 130, "completionTokens": 5, "totalTokens": 135},
        "finishReason": "tool_calls",
        "toolCalls": [{"id": "toolu_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}],
        "metadata": {"id": "msg_1", "stopSequence": None, "reasoning": "weather needed", "cachedTokens": 100,
                     "cacheCreationTokens": 20},
    }


@pytest.mark.parametrize("stop_reason,finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                                ("refusal", "content_filter"), ("pause_turn", "incomplete"),
                                                (None, "stop")])
def test_finish_reason_mapping(stop_reason, finish):
    assert anthropic_format.finish_reason(stop_reason) == finish


@pytest.mark.parametrize("status,error_type,category,http_status,reason", [
    (529, "overloaded_error", ErrorCategory.provider, 503, Reason.UPSTREAM_OVERLOADED),
    (429, "rate_limit_error", ErrorCategory.rate_limit, 429, Reason.UPSTREAM_ERROR),
    (401, "authentication_error", ErrorCategory.auth, 502, Reason.PROVIDER_REJECTED_CREDENTIALS),
    (403, "permission_error", ErrorCategory.auth, 502, Reason.PROVIDER_REJECTED_CREDENTIALS),
    (400, "invalid_request_error", ErrorCategory.validation, 400, Reason.UPSTREAM_ERROR),
    (404, "not_found_error", ErrorCategory.validation, 400, Reason.MODEL_NOT_FOUND),
    (413, "request_too_large", ErrorCategory.validation, 413, Reason.BODY_TOO_LARGE),
    (500, "api_error", ErrorCategory.provider, 502, Reason.UPSTREAM_ERROR),
    (402, "billing_error", ErrorCategory.quota, 402, None),
])
def test_anthropic_error_types_are_classified(status, error_type, category, http_status, reason):
    payload = {"type": "error", "error": {"type": error_type, "message": "details"}}
    assert error_fields(payload) == (None, error_type, "details")
    err = adapter().error(CHAT, status, payload, {"retry-after": "4"})
    assert (err.category, err.status, err.reason) == (category, http_status, reason)
    assert err.upstream_code == error_type
    if status in (429, 529):
        assert err.headers == {"retry-after": "4"}
