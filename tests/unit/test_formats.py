"""Pure request/response mapping of the provider adapters (no network)."""

import pytest
from pydantic import ValidationError

from contracts.execute import ExecuteParams, ExecuteRequest
from service.providers import chat_format, responses_format
from service.providers.base import OperationSpec
from service.providers.capabilities import HF_TGI_GENERATE
from service.providers.huggingface import HuggingFaceAdapter
from service.providers.openai import OpenAIAdapter

CHAT = OperationSpec("chat.completions", "chat", frozenset())
GENERATE = OperationSpec("text.generation", "generate", HF_TGI_GENERATE)
EMBED = OperationSpec("embeddings", "embeddings", frozenset())
RESPONSES = OperationSpec("responses", "responses", frozenset())


def params(**kw) -> ExecuteParams:
    return ExecuteParams.model_validate({"model": "gpt-4o-mini", **kw})


def test_camel_and_snake_case_are_the_same_parameter():
    a = params(maxTokens=5, topP=0.5, frequencyPenalty=1, toolChoice="auto", stopSequences=["x"])
    b = params(max_tokens=5, top_p=0.5, frequency_penalty=1, tool_choice="auto", stop_sequences=["x"])
    assert a.model_dump() == b.model_dump()
    assert params(max_completion_tokens=9).maxTokens == 9


def test_unknown_parameter_is_rejected_with_its_name():
    with pytest.raises(ValidationError) as err:
        params(temprature=0.3)
    assert "temprature" in str(err.value)


@pytest.mark.parametrize("bad", [{"temperature": 3}, {"topP": 2}, {"maxTokens": 0}, {"messages": "hi"},
                                 {"messages": [{"role": "wizard", "content": "x"}]}])
def test_out_of_range_and_wrong_types_are_rejected(bad):
    with pytest.raises(ValidationError):
        params(**bad)


def test_developer_role_and_dimensions_are_accepted():
    p = params(messages=[{"role": "developer", "content": "be terse"}], dimensions=256)
    assert p.messages[0].role == "developer" and p.dimensions == 256


def test_chat_body_maps_names_and_injects_no_defaults():
    body = chat_format.chat_body(params(prompt="hi"))
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    body = chat_format.chat_body(params(
        messages=[{"role": "user", "content": "hi"}], maxTokens=10, topP=0.9, stopSequences=["END"], seed=3,
        frequencyPenalty=0.1, presencePenalty=0.2, systemPrompt="terse", toolChoice="auto",
        responseFormat="json", parallelToolCalls=False, reasoningEffort="low"))
    assert body["messages"][0] == {"role": "system", "content": "terse"}
    assert body["max_tokens"] == 10 and body["top_p"] == 0.9 and body["stop"] == ["END"]
    assert body["frequency_penalty"] == 0.1 and body["presence_penalty"] == 0.2 and body["seed"] == 3
    assert body["tool_choice"] == "auto" and body["response_format"] == {"type": "json_object"}
    assert body["parallel_tool_calls"] is False and body["reasoning_effort"] == "low"
    assert not any(k[0].isupper() or any(c.isupper() for c in k) for k in body)  # no camelCase leaks upstream


def test_reasoning_models_get_max_completion_tokens():
    adapter = OpenAIAdapter("http://up/v1")
    call = adapter.build(CHAT, params(model="o3-mini", prompt="x", maxTokens=50), "sk")
    assert call.body["max_completion_tokens"] == 50 and "max_tokens" not in call.body
    assert "temperature" not in call.body
    call = adapter.build(CHAT, params(model="gpt-4o", prompt="x", maxTokens=50), "sk")
    assert call.body["max_tokens"] == 50
    assert call.url == "http://up/v1/chat/completions" and call.headers["authorization"] == "Bearer sk"


def test_anthropic_shaped_tools_become_function_tools():
    body = chat_format.chat_body(params(prompt="x", tools=[
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
        {"type": "function", "function": {"name": "f", "parameters": {}}},
    ]))
    assert body["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "w", "parameters": {"type": "object"}}}
    assert body["tools"][1]["function"]["name"] == "f"


def test_json_schema_response_format():
    fmt = chat_format.response_format(params(responseFormat="json_schema", jsonSchema={"type": "object"}))
    assert fmt == {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}}


def test_parse_chat_normalizes_tool_calls_usage_and_finish_reason():
    data = chat_format.parse_chat("openai", "gpt-4o", {
        "id": "c1", "created": 1, "model": "gpt-4o-2024", "system_fingerprint": "fp",
        "choices": [{"message": {"content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                  "completion_tokens_details": {"reasoning_tokens": 1}},
    })
    assert data["content"] == "" and data["model"] == "gpt-4o-2024" and data["finishReason"] == "tool_calls"
    assert data["toolCalls"] == [{"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]
    assert data["usage"] == {"promptTokens": 5, "completionTokens": 2, "totalTokens": 7}
    assert data["metadata"] == {"id": "c1", "created": 1, "systemFingerprint": "fp", "reasoningTokens": 1}


@pytest.mark.parametrize("raw,expected", [(None, "stop"), ("END_TURN", "stop"), ("max_tokens", "length"),
                                          ("safety", "content_filter"), ("function_call", "tool_calls"),
                                          ("incomplete", "incomplete"), ("weird", "stop")])
def test_finish_reason_mapping(raw, expected):
    assert chat_format.finish_reason(raw) == expected


def test_embeddings_one_vector_per_input_in_input_order():
    data = chat_format.parse_embeddings("openai", "m", {
        "data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
        "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    assert data["embeddings"] == [[1.0], [2.0]] and data["usage"] == {"promptTokens": 4, "totalTokens": 4}
    assert chat_format.parse_embeddings("hf", "m", [0.1, 0.2])["embeddings"] == [[0.1, 0.2]]
    with pytest.raises(ValueError):
        chat_format.parse_embeddings("hf", "m", [[[0.1], [0.2]]])


def test_responses_body_uses_current_public_shapes():
    body = responses_format.body(params(
        messages=[{"role": "user", "content": "weather?"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        instructions="be brief", maxTokens=20, reasoningEffort="low", showReasoning=True,
        tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        toolChoice={"type": "function", "function": {"name": "w"}},
        responseFormat="json_schema", jsonSchema={"name": "out", "schema": {"type": "object"}}))
    assert body["input"] == [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]
    assert body["instructions"] == "be brief" and body["max_output_tokens"] == 20
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["tools"] == [{"type": "function", "name": "w", "parameters": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "function", "name": "w"}
    assert body["text"] == {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}}


def test_responses_parse_reads_function_calls_and_usage_details():
    data = responses_format.parse("openai", "o4-mini", {
        "id": "resp_1", "created_at": 5, "status": "completed", "model": "o4-mini",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "a"},
                                            {"type": "output_text", "text": "b"}]},
            {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{\"x\":1}"}],
        "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
                  "output_tokens_details": {"reasoning_tokens": 2}, "input_tokens_details": {"cached_tokens": 1}}})
    assert data["content"] == "a\nb" and data["finishReason"] == "tool_calls"
    assert data["toolCalls"][0] == {"id": "call_1", "type": "function",
                                    "function": {"name": "w", "arguments": "{\"x\":1}"}}
    assert data["metadata"]["reasoning"] == "thought" and data["metadata"]["reasoningTokens"] == 2
    assert data["metadata"]["cachedTokens"] == 1
    incomplete = responses_format.parse("openai", "m", {"status": "incomplete",
                                                        "incomplete_details": {"reason": "max_output_tokens"}})
    assert incomplete["finishReason"] == "length"


def test_huggingface_wire_formats():
    tgi = HuggingFaceAdapter("http://hf", text_generation_api="tgi", embeddings_api="tei")
    call = tgi.build(GENERATE, params(model="m", prompt="Once", maxTokens=5, topK=3, stop="\n"), "hf_x")
    assert call.url == "http://hf/generate"
    assert call.body["inputs"] == "Once"
    assert call.body["parameters"]["max_new_tokens"] == 5 and call.body["parameters"]["top_k"] == 3
    assert call.body["parameters"]["stop"] == ["\n"]
    # messages still go to the chat route, with the developer role as system
    call = tgi.build(GENERATE, params(model="m", messages=[{"role": "developer", "content": "x"}]), "k")
    assert call.url == "http://hf/v1/chat/completions" and call.body["messages"][0]["role"] == "system"
    assert tgi.build(EMBED, params(model="m", input="a"), "k").body == {"inputs": ["a"]}
    router = HuggingFaceAdapter("http://hf")
    assert router.build(EMBED, params(model="org/m", text="a"), "k").url == \
        "http://hf/hf-inference/models/org/m/pipeline/feature-extraction"
    parsed = tgi.parse(GENERATE, params(model="m", prompt="x"), {
        "generated_text": "yes", "details": {"finish_reason": "eos_token", "generated_tokens": 2}})
    assert parsed["content"] == "yes" and parsed["finishReason"] == "stop" and parsed["usage"]["completionTokens"] == 2


def test_execute_request_accepts_credential_id_and_rejects_unknown_top_level_keys():
    req = ExecuteRequest.model_validate({"provider": "openai", "operation": "embeddings",
                                         "params": {"model": "m", "input": "x"}, "credential_id": "c1"})
    assert req.credentialId == "c1"
    with pytest.raises(ValidationError):
        ExecuteRequest.model_validate({"provider": "openai", "operation": "x", "params": {"model": "m"}, "extra": 1})


def test_model_table_and_cost():
    from service.providers.models import cost_usd_micros, model_info, models_for

    assert models_for("openai")[0].id == "gpt-5.2" and models_for("nobody") == ()
    assert model_info("openai", "gpt-4o-mini-2024-07-18").id == "gpt-4o-mini"  # dated ids map to their family
    assert model_info("openai", "gpt-4o-2024-08-06").id == "gpt-4o"
    # 1000 prompt tokens at $0.15/M + 500 completion tokens at $0.60/M = $0.00045 = 450 micros
    assert cost_usd_micros("openai", "gpt-4o-mini", 1000, 500) == 450
    assert cost_usd_micros("huggingface", "meta-llama/Llama-3.2-3B-Instruct", 10, 10) is None


def test_responses_input_converts_chat_content_parts():
    body = responses_format.body(params(messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]))
    assert body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "what is it?"},
                                     {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a cat"}]}]


def test_tgi_generate_asks_for_prompt_tokens():
    tgi = HuggingFaceAdapter("http://hf", text_generation_api="tgi")
    call = tgi.build(GENERATE, params(model="m", prompt="x"), "k")
    assert call.body["parameters"]["decoder_input_details"] is True
    parsed = tgi.parse(GENERATE, params(model="m", prompt="x"), {"generated_text": "y", "details": {
        "finish_reason": "length", "generated_tokens": 3, "prefill": [{"id": 1}, {"id": 2}]}})
    assert parsed["usage"] == {"promptTokens": 2, "completionTokens": 3, "totalTokens": 5}
