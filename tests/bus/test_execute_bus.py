"""`integrations.v1.execute` from a plain nats-py client, as other Symbia services call it,
following docs/CONTRACTS.md only: JSON body, identity in headers, status in `x-status`."""

import asyncio
import time

import orjson
import pytest

from contracts.execute import ExecuteSuccess
from tests.conftest import CALLER_KEY, OPENAI_KEY

SUBJECT = "integrations.v1.execute"


async def execute(nc, body, headers=None, raw: bytes | None = None):
    hdrs = {"x-api-key": CALLER_KEY} if headers is None else headers
    msg = await nc.request(SUBJECT, raw if raw is not None else orjson.dumps(body), timeout=15, headers=hdrs)
    return int(msg.headers["x-status"]), orjson.loads(msg.data), msg.headers


def chat(provider="openai", operation="chat.completions", **params):
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return {"provider": provider, "operation": operation, "params": params}


def assert_envelope(body, category, status_expected=None):
    assert body["success"] is False
    assert body["category"] == body["errorCategory"] == category
    assert isinstance(body["retryable"], bool) and body["requestId"] and "durationMs" in body


async def test_openai_chat_completion(worker, nc, llmock):
    status, body, headers = await execute(nc, chat(maxTokens=64, temperature=0.2))
    assert status == 200, body
    ExecuteSuccess.model_validate(body)
    assert body["data"]["content"] and body["data"]["finishReason"] == "stop"
    assert body["requestId"].startswith("req_") and headers["x-request-id"] == body["requestId"]
    sent = llmock.requests()[-1]
    assert sent["path"] == "/v1/chat/completions"


async def test_upstream_request_is_mapped_explicitly(worker, nc, llmock):
    status, body, _ = await execute(nc, chat(max_tokens=7, topP=0.5, systemPrompt="terse"))
    assert status == 200, body
    assert llmock.requests()[-1]["body"] == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "Hello"}],
        "max_tokens": 7,
        "top_p": 0.5,
    }


async def test_openai_embeddings_one_vector_per_input(worker, nc):
    status, body, _ = await execute(nc, {"provider": "openai", "operation": "embeddings",
                                         "params": {"model": "text-embedding-3-small", "input": ["a", "b", "c"]}})
    assert status == 200, body
    vectors = body["data"]["embeddings"]
    assert len(vectors) == 3 and all(len(v) == len(vectors[0]) > 0 for v in vectors)
    status, body, _ = await execute(nc, {"provider": "openai", "operation": "embeddings",
                                         "params": {"model": "text-embedding-3-small", "text": "single"}})
    assert status == 200 and len(body["data"]["embeddings"]) == 1


async def test_openai_responses_with_a_function_tool(worker, nc):
    status, body, _ = await execute(nc, {"provider": "openai", "operation": "responses", "params": {
        "model": "gpt-4o-mini", "input": "weather in Oslo?",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]}})
    assert status == 200, body
    data = body["data"]
    assert data["finishReason"] == "tool_calls"
    assert data["toolCalls"][0]["function"]["name"] == "get_weather"
    assert data["metadata"]["status"] == "completed" and data["metadata"]["id"].startswith("resp_")


async def test_huggingface_chat_text_generation_vision_and_embeddings(worker, nc, hf_fake):
    status, body, _ = await execute(nc, chat("huggingface", model="meta-llama/Llama-3.2-3B-Instruct"))
    assert status == 200 and body["data"]["content"] == "hf says: Hello"
    assert body["data"]["usage"] == {"promptTokens": 7, "completionTokens": 4, "totalTokens": 11}
    assert hf_fake.requests[-1]["headers"]["Authorization"] == "Bearer hf_test"

    status, body, _ = await execute(nc, {"provider": "huggingface", "operation": "text.generation",
                                         "params": {"model": "m", "prompt": "Once upon"}})
    assert status == 200 and body["data"]["content"] == "hf says: Once upon"

    status, body, _ = await execute(nc, {"provider": "huggingface", "operation": "image.description", "params": {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct", "maxTokens": 200, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}})
    assert status == 200, body
    assert hf_fake.requests[-1]["body"]["messages"][0]["content"][1]["type"] == "image_url"

    status, body, _ = await execute(nc, {"provider": "huggingface", "operation": "embeddings", "params": {
        "model": "sentence-transformers/all-MiniLM-L6-v2", "input": ["x", "y"]}})
    assert status == 200 and len(body["data"]["embeddings"]) == 2
    assert body["data"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert hf_fake.requests[-1]["path"].endswith("/pipeline/feature-extraction")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}])
async def test_unauthenticated_caller_gets_401(worker, nc, headers):
    status, body, _ = await execute(nc, chat(), headers=headers)
    assert status == 401 and body["error"] == "Authentication required"
    assert_envelope(body, "auth")


async def test_bearer_key_is_accepted(worker, nc):
    status, _, _ = await execute(nc, chat(), headers={"authorization": f"Bearer {CALLER_KEY}"})
    assert status == 200


async def test_org_restricted_key_cannot_act_in_another_org(worker, nc, acme_key):
    status, _, _ = await execute(nc, chat(), headers={"x-api-key": acme_key, "x-org-id": "acme"})
    assert status == 200
    status, body, _ = await execute(nc, chat(), headers={"x-api-key": acme_key, "x-org-id": "globex"})
    assert status == 403 and body["reason"] == "org_forbidden"


@pytest.mark.parametrize("raw,reason,fragment", [
    (b'{"provider": "openai", ', "invalid_json", "Malformed JSON"),
    (b"[1,2]", "invalid_request", "Invalid request"),
    (b'{"provider": "openai", "operation": "chat.completions", "params": {}}', "invalid_request", "params.model"),
    (b'{"provider": 5, "operation": "chat.completions", "params": {"model": "m", "prompt": "x"}}',
     "invalid_request", "provider"),
    (b'{"provider": "openai", "operation": "chat.completions", "params": {"model": "m", "prompt": "x", "foo": 1}}',
     "invalid_request", "params.foo"),
    (b"", "invalid_json", "Malformed JSON"),
])
async def test_bad_input_gets_a_400_envelope(worker, nc, raw, reason, fragment):
    status, body, _ = await execute(nc, None, raw=raw)
    assert status == 400, body
    assert_envelope(body, "validation")
    assert body["reason"] == reason and fragment in body["error"]


async def test_unknown_provider_and_unsupported_pairs_are_400_not_502(worker, nc):
    status, body, _ = await execute(nc, chat("acme-llm"))
    assert status == 400 and body["reason"] == "unknown_provider" and body["retryable"] is False
    status, body, _ = await execute(nc, chat("openai", "text.generation"))
    assert status == 400 and body["reason"] == "unsupported_operation"
    status, body, _ = await execute(nc, chat("huggingface", reasoningEffort="high"))
    assert status == 400 and body["reason"] == "unsupported_parameter" and "reasoningEffort" in body["error"]


@pytest.mark.parametrize("behavior,status,category,retryable,reason", [
    ({"type": "fail", "status": 429, "retry_after": 3}, 429, "rate_limit", True, "upstream_error"),
    ({"type": "fail", "status": 503}, 502, "provider", True, "upstream_error"),
    ({"type": "fail", "status": 500}, 502, "provider", True, "upstream_error"),
    ({"type": "fail", "status": 401, "code": "invalid_api_key"}, 502, "auth", False,
     "provider_rejected_credentials"),
    ({"type": "fail", "status": 429, "code": "insufficient_quota"}, 402, "quota", False, None),
    ({"type": "fail", "status": 400, "code": "content_policy_violation"}, 422, "content_filter", False, None),
    ({"type": "fail", "status": 404, "code": "model_not_found"}, 400, "validation", False, "model_not_found"),
    ({"type": "fail", "status": 400}, 400, "validation", False, "upstream_error"),
])
async def test_upstream_errors_are_classified_from_status_and_code(worker, nc, llmock, behavior, status, category,
                                                                    retryable, reason):
    llmock.scenario(behavior)
    got, body, headers = await execute(nc, chat())
    assert got == status, body
    assert_envelope(body, category)
    assert body["retryable"] is retryable and body["provider"] == "openai"
    assert body["upstream"]["statusCode"] == behavior["status"]
    if reason:
        assert body["reason"] == reason
    if behavior.get("retry_after"):
        assert headers["retry-after"] == "3"
    assert OPENAI_KEY not in orjson.dumps(body).decode()


async def test_upstream_timeout_is_504(worker, nc, llmock):
    llmock.scenario({"type": "delay", "seconds": 5})
    started = time.monotonic()
    status, body, _ = await execute(nc, chat())
    assert status == 504 and body["category"] == "timeout" and body["retryable"] is True
    assert time.monotonic() - started < 4.5  # the configured 3 s upstream timeout, not llmock's 5 s


async def test_huggingface_cold_model_and_token_features(worker, nc):
    status, body, headers = await execute(nc, chat("huggingface", model="loading"))
    assert status == 502 and body["retryable"] is True and headers["retry-after"] == "12"
    status, body, _ = await execute(nc, {"provider": "huggingface", "operation": "embeddings",
                                         "params": {"model": "tokens", "input": "x"}})
    assert status == 502 and body["reason"] == "upstream_invalid_response"
    status, body, _ = await execute(nc, chat("huggingface", model="fail-422"))
    assert status == 400 and body["category"] == "validation"


async def test_concurrent_requests_are_served_in_parallel(worker, nc, llmock):
    llmock.scenario({"type": "delay", "seconds": 0.5, "times": 20})
    started = time.monotonic()
    results = await asyncio.gather(*(execute(nc, chat()) for _ in range(20)))
    assert all(status == 200 for status, _, _ in results)
    assert time.monotonic() - started < 3  # 20 × 0.5 s would be 10 s one at a time


async def test_each_authenticated_call_is_observed_with_what_the_pipeline_learned(worker, nc):
    seen = []

    async def observe(command, reply):
        seen.append((command.record, reply.status))

    worker.services.observers.append(observe)
    try:
        await execute(nc, chat(maxTokens=5), headers={"x-api-key": CALLER_KEY, "x-org-id": "org-7"})
        await execute(nc, chat("google"))                       # rejected after authentication: observed
        await execute(nc, chat(), headers={"x-api-key": "bad"})  # never authenticated: not usage
    finally:
        worker.services.observers.remove(observe)
    (ok, ok_status), (rejected, rejected_status) = seen
    assert ok_status == 200 and ok.org == "org-7" and ok.integration == "openai"
    assert ok.operation == "chat.completions" and ok.model_requested == "gpt-4o-mini"
    assert ok.total_tokens > 0 and ok.credential_source == "env" and ok.principal_type == "api_key"
    assert rejected_status == 400 and rejected.integration == "google" and rejected.credential_source is None
