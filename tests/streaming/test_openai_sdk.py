"""The official `openai` SDK against the gateway, unchanged: only base_url and api_key differ
from talking to OpenAI. Chat, streaming with include_usage, tool calls, embeddings (the SDK
asks for base64 by default), models, and errors mapped to the SDK's exception classes."""

import httpx
import openai
import pytest

from tests.conftest import CALLER_KEY
from tests.streaming.helpers import wait_for


@pytest.fixture
async def sdk(gateway_url):
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=CALLER_KEY, max_retries=0, timeout=20)
    yield client
    await client.close()


MESSAGES = [{"role": "user", "content": "Say something"}]


async def test_chat_completion(sdk, llmock, recorded):
    completion = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert llmock.requests()[-1]["body"]["model"] == "gpt-4o-mini"
    record, _ = await wait_for(lambda: recorded and recorded[-1])
    assert record.integration == "openai" and record.total_tokens == completion.usage.total_tokens


async def test_bare_model_names_use_the_default_provider(sdk, llmock):
    completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content and llmock.requests()[-1]["body"]["model"] == "gpt-4o-mini"


async def test_streaming_with_usage(sdk, llmock, recorded):
    stream = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"] and text.startswith("Simulated answer")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    record, _ = await wait_for(lambda: recorded and recorded[-1])
    assert record.streamed and record.total_tokens == chunks[-1].usage.total_tokens


async def test_streaming_without_usage_sends_no_usage_chunk(sdk):
    stream = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


async def test_streamed_tool_calls(sdk, llmock):
    llmock.scenario({"type": "reply", "tool_calls": [{"name": "lookup", "arguments": {"query": "weather in Oslo"}}]})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}}}}]
    stream = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, tools=tools,
                                               stream=True)
    arguments, name, finish = "", None, None
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            name = name or call.function.name
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "lookup" and arguments == '{"query": "weather in Oslo"}' and finish == "tool_calls"


async def test_huggingface_stream_through_the_sdk(sdk, hf_fake):
    stream = await sdk.chat.completions.create(model="huggingface/meta-llama/Llama-3.2-3B-Instruct",
                                               messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hf says: Say something"
    assert chunks[-1].usage.prompt_tokens == 7
    assert hf_fake.requests[-1]["body"]["model"] == "meta-llama/Llama-3.2-3B-Instruct"


async def test_embeddings_base64_by_default_and_float(sdk):
    default = await sdk.embeddings.create(model="openai/text-embedding-3-small", input=["one", "two"])
    floats = await sdk.embeddings.create(model="openai/text-embedding-3-small", input=["one", "two"],
                                         encoding_format="float")
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) > 0
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)
    assert default.model == "text-embedding-3-small" and default.usage.total_tokens >= 0


async def test_models_are_listed_as_provider_slash_model(sdk):
    ids = [m.id async for m in sdk.models.list()]
    assert "openai/gpt-4o-mini" in ids and any(i.startswith("huggingface/") for i in ids)


async def test_one_model_is_retrieved_by_its_id(sdk):
    model = await sdk.models.retrieve("openai/gpt-4o-mini")     # GET /v1/models/openai/gpt-4o-mini
    assert (model.id, model.object, model.owned_by) == ("openai/gpt-4o-mini", "model", "openai")
    assert (await sdk.models.retrieve("gpt-4o-mini")).id == "openai/gpt-4o-mini"   # the default provider
    hf = next(i for i in [m.id async for m in sdk.models.list()] if i.startswith("huggingface/"))
    assert (await sdk.models.retrieve(hf)).owned_by == "huggingface"
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("openai/no-such-model")
    assert caught.value.code == "model_not_found" and "no-such-model" in caught.value.message


async def test_errors_map_to_the_sdk_exception_classes(gateway_url, sdk, llmock):
    bad_key = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await bad_key.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert caught.value.code == "unauthenticated" and caught.value.type == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        await bad_key.models.list()
    await bad_key.close()

    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, logprobs=True)
    assert "logprobs" in caught.value.message and caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=[])
    with pytest.raises(openai.BadRequestError):  # the upstream's 422 is the caller's mistake
        await sdk.chat.completions.create(model="huggingface/fail-422", messages=MESSAGES)

    cases = [({"type": "fail", "status": 429}, openai.RateLimitError),
             ({"type": "fail", "status": 429, "code": "insufficient_quota"}, openai.RateLimitError),
             ({"type": "fail", "status": 404, "code": "model_not_found"}, openai.NotFoundError),
             ({"type": "fail", "status": 500}, openai.InternalServerError),
             ({"type": "fail", "status": 400, "code": "content_policy_violation"}, openai.BadRequestError)]
    for behavior, exception in cases:
        llmock.scenario(behavior)
        with pytest.raises(exception):
            await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    llmock.scenario({"type": "fail", "status": 429})
    with pytest.raises(openai.RateLimitError):  # also when asking for a stream
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)


async def test_quota_errors_tell_the_sdk_not_to_retry(gateway_url, llmock):
    llmock.scenario({"type": "fail", "status": 429, "code": "insufficient_quota"})
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        response = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {CALLER_KEY}"},
                                     json={"model": "openai/gpt-4o-mini", "messages": MESSAGES})
        assert response.status_code == 429 and response.headers["x-should-retry"] == "false"
        assert response.json()["error"]["code"] == "insufficient_quota"
        response = await client.get("/v1/nothing-here", headers={"authorization": f"Bearer {CALLER_KEY}"})
        assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"


async def test_a_stream_that_breaks_raises_in_the_sdk(sdk, llmock):
    llmock.scenario({"type": "stream_fault", "kind": "truncate", "after_chunks": 3})
    stream = await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert received and "ended the stream before it was complete" in caught.value.message


async def test_a_stream_that_fails_before_any_output_raises_at_create(sdk, llmock):
    llmock.scenario({"type": "stream_fault", "kind": "disconnect", "after_chunks": 1})
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True)


async def test_claude_streams_through_the_openai_sdk(sdk, llmock):
    """Anthropic behind the OpenAI wire format: Messages API events become chat.completion.chunks."""
    stream = await sdk.chat.completions.create(model="anthropic/claude-haiku-4-5-20251001", messages=MESSAGES,
                                               stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.prompt_tokens > 0 and chunks[-1].usage.completion_tokens > 0
    assert llmock.requests()[-1]["path"] == "/anthropic/v1/messages"
