"""Pure pieces of streaming: the SSE parser, the providers' chunk decoders, accumulation into
the normalized response, OpenAI error and model-name mapping."""

import orjson
import pytest

from contracts.openai import openai_error
from service.commands import Reply
from service.errors import GatewayError
from service.openai_compat import OpenAIChunkRenderer, split_model
from service.providers.anthropic_format import AnthropicStreamDecoder
from service.providers.base import StreamChunk
from service.providers.chat_format import ChatChunkDecoder
from service.providers.huggingface import TgiStreamDecoder
from service.sse import EventTooLarge, SseDecoder
from service.stream import StreamAccumulator, estimate_tokens


def test_sse_events_split_across_reads_and_line_endings():
    decoder = SseDecoder(1024)
    events = decoder.feed(b'data: {"a"') + decoder.feed(b':1}\r\n\r\n: keep-alive\n\nevent: ping\ndata: x\n')
    events += decoder.feed(b"data: y\n\ndata: [DONE]")
    assert [(e.event, e.data) for e in events] == [(None, '{"a":1}'), ("ping", "x\ny")]
    assert [(e.event, e.data) for e in decoder.close()] == [(None, "[DONE]")]


def test_sse_event_size_is_bounded():
    with pytest.raises(EventTooLarge):
        SseDecoder(16).feed(b"data: " + b"x" * 40)
    with pytest.raises(EventTooLarge):
        decoder = SseDecoder(16)
        decoder.feed(b"data: 0123456789\n")
        decoder.feed(b"data: 0123456789\n")


def test_openai_chunks_decode_into_deltas_usage_and_end():
    decoder = ChatChunkDecoder("openai", "chat.completions")
    first = decoder.decode(None, '{"id":"c1","created":5,"model":"gpt-x","choices":[{"index":0,'
                                 '"delta":{"role":"assistant","content":""},"finish_reason":null}]}')
    assert not first.has_delta and first.metadata == {"id": "c1", "created": 5} and first.model == "gpt-x"
    tool = decoder.decode(None, '{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
                                '"function":{"name":"f","arguments":""}}]}}]}')
    assert tool.tool_calls == [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "f", "arguments": ""}}]
    usage = decoder.decode(None, '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}')
    assert usage.usage == {"promptTokens": 3, "completionTokens": 4, "totalTokens": 7}
    assert decoder.decode(None, "[DONE]").done


def test_openai_stream_errors_and_garbage_are_gateway_errors():
    decoder = ChatChunkDecoder("openai", "chat.completions")
    with pytest.raises(GatewayError) as caught:
        decoder.decode(None, '{"error":{"message":"overloaded","type":"server_error"}}')
    assert caught.value.category == "provider" and caught.value.reason == "stream_interrupted"
    with pytest.raises(GatewayError) as caught:
        decoder.decode(None, '{"choices": [')
    assert caught.value.reason == "upstream_invalid_response"


def test_tgi_generate_stream_skips_special_tokens_and_reads_details():
    decoder = TgiStreamDecoder("huggingface", "text.generation")
    token = decoder.decode(None, '{"token":{"id":1,"text":" Hi","special":false},"generated_text":null,"details":null}')
    assert token.content == " Hi" and not token.done
    last = decoder.decode(None, '{"token":{"id":2,"text":"</s>","special":true},"generated_text":" Hi",'
                                '"details":{"finish_reason":"eos_token","generated_tokens":2,"seed":3}}')
    assert last.content is None and last.done and last.finish_reason == "eos_token"
    assert last.usage == {"completionTokens": 2}


def test_accumulator_assembles_content_tool_calls_and_counts_output():
    decoder = ChatChunkDecoder("openai", "chat.completions")
    acc = StreamAccumulator()
    for data in ('{"choices":[{"delta":{"content":"Hel"}}]}', '{"choices":[{"delta":{"content":"lo"}}]}',
                 '{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\\"a"}}]}}]}',
                 '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\":1}"}}]}}]}',
                 '{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}'):
        acc.add(decoder.decode(None, data))
    assert "".join(acc.content) == "Hello" and acc.finish == "tool_calls"
    assert acc.calls() == [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]
    assert acc.generated_tokens() == 4 and estimate_tokens("") == 0


def test_openai_chunk_renderer_shape():
    renderer = OpenAIChunkRenderer("chatcmpl-1", "openai/m", include_usage=True)
    first = orjson.loads(renderer.delta(StreamChunk(content="Hi", model="m-2024")))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"} and first["model"] == "m-2024"
    data = {"finishReason": "incomplete", "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3}}
    trailing, end = renderer.finish(data, Reply(200, b"{}"))
    finish, usage = (orjson.loads(b) for b in trailing)
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 1, "completion_tokens": 2,
                                                         "total_tokens": 3}
    assert end == b""


@pytest.mark.parametrize("envelope,status,expected_status,kind,code,retry", [
    ({"category": "auth", "reason": "unauthenticated", "retryable": False}, 401, 401, "authentication_error",
     "unauthenticated", "false"),
    ({"category": "auth", "reason": "org_forbidden"}, 403, 403, "permission_error", "org_forbidden", "false"),
    ({"category": "quota", "retryable": False}, 402, 429, "insufficient_quota", "insufficient_quota", "false"),
    ({"category": "content_filter"}, 422, 400, "invalid_request_error", "content_policy_violation", "false"),
    ({"category": "validation", "reason": "model_not_found"}, 400, 404, "invalid_request_error", "model_not_found",
     "false"),
    ({"category": "rate_limit", "retryable": True}, 429, 429, "rate_limit_error", None, "true"),
    ({"category": "provider", "upstream": {"code": "server_error"}, "retryable": True}, 502, 502, "api_error",
     "server_error", "true"),
    ({"category": "nonsense"}, 500, 500, "server_error", None, "false"),
])
def test_openai_error_mapping(envelope, status, expected_status, kind, code, retry):
    got_status, body, headers = openai_error({"error": "message", **envelope}, status)
    assert got_status == expected_status and headers == {"x-should-retry": retry}
    assert body == {"error": {"message": "message", "type": kind, "param": None, "code": code}}


def test_model_names_split_on_a_known_provider_only():
    providers = {"openai": object(), "huggingface": object()}
    assert split_model("openai/gpt-4o", providers, "openai") == ("openai", "gpt-4o")
    assert split_model("huggingface/meta-llama/L-3", providers, "openai") == ("huggingface", "meta-llama/L-3")
    assert split_model("meta-llama/L-3", providers, "huggingface") == ("huggingface", "meta-llama/L-3")
    assert split_model("gpt-4o", providers, "openai") == ("openai", "gpt-4o")


def test_anthropic_events_decode_like_parse():
    """Two text blocks (joined by a newline, as `parse` joins them), thinking, two tool calls,
    prompt tokens with cache from message_start, output tokens and stop reason from message_delta."""
    decoder = AnthropicStreamDecoder("anthropic", "chat.completions")
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 10, "output_tokens": 1,
                                                          "cache_read_input_tokens": 4}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "Hello"}}),
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "text_delta", "text": "world"}}),
        ("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
            "type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 3,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("content_block_start", {"type": "content_block_start", "index": 4, "content_block": {
            "type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 3,
                                 "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 4}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 7}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    acc = StreamAccumulator()
    chunks = [decoder.decode(name, orjson.dumps(body).decode()) for name, body in events]
    for chunk in chunks:
        if chunk is not None:
            acc.add(chunk)
    assert chunks[-1].done and chunks[5] is None and chunks[3] is None
    assert "".join(acc.content) == "Hello\nworld" and "".join(acc.reasoning) == "hmm"
    assert acc.calls() == [{"id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                           {"id": "toolu_b", "type": "function", "function": {"name": "g", "arguments": ""}}]
    assert acc.usage == {"promptTokens": 14, "completionTokens": 7} and acc.finish == "tool_calls"
    assert acc.model == "claude-x" and acc.metadata == {"id": "msg_1", "cachedTokens": 4}


def test_anthropic_error_events_and_garbage_raise():
    decoder = AnthropicStreamDecoder("anthropic", "messages")
    with pytest.raises(GatewayError) as failed:
        decoder.decode("error", '{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}')
    assert failed.value.reason == "stream_interrupted" and "busy" in str(failed.value)
    with pytest.raises(GatewayError) as garbage:
        decoder.decode("content_block_delta", "{not json")
    assert garbage.value.reason == "upstream_invalid_response"
