"""Retries (backoff, Retry-After, idempotency), fallbacks (execute and streams) and caller
deadlines end to end, against llmock faults."""

import time

import orjson

from tests.conftest import CALLER_KEY
from tests.resilience.conftest import ANTHROPIC_MODEL, P, chat
from tests.streaming.helpers import json_events

OPENAI_DOWN = {"type": "fail", "status": 502, "retry_after": 0, "times": None, "match": {"provider": "openai"}}
TO_ANTHROPIC = [{"provider": "anthropic", "model": ANTHROPIC_MODEL}]


def providers(llmock) -> list[str]:
    return [r["provider"] for r in llmock.requests()]


# --- retries -------------------------------------------------------------------------------------

async def test_retry_after_is_honoured(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 429, "retry_after": 1, "times": 1})
    reply, body = await cluster.run(cluster.a, "__call__", chat())
    assert reply.status == 200 and body["data"]["metadata"]["attempts"] == 2
    first, second = llmock.requests()
    assert first["status"] == 429 and second["status"] == 200
    assert second["started_at"] - first["ended_at"] >= 1.0          # waited as long as it was asked
    verdict = orjson.loads(orjson.dumps(llmock.requests()))            # the journal is what llmock judged
    assert all(r["retry_after"] in (None, 1) for r in verdict)


async def test_an_error_burst_is_retried_with_backoff(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 503, "retry_after": 0, "times": 2})
    started = time.monotonic()
    response = await cluster.http.post(f"{P}/execute", json=chat())
    assert response.status_code == 200 and response.json()["data"]["metadata"]["attempts"] == 3
    assert time.monotonic() - started < 2.0                            # backoff 0.05 s, 0.1 s
    # retries exhausted: the upstream's error, saying how many attempts were made
    llmock.scenario({"type": "fail", "status": 503, "retry_after": 0, "times": 3})
    response = await cluster.http.post(f"{P}/execute", json=chat())
    body = response.json()
    assert response.status_code == 502 and body["reason"] == "upstream_error" and body["category"] == "provider"
    assert "after 3 attempts: openai/gpt-4o-mini" in body["error"]


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 429, "retry_after": 30, "times": 1})
    started = time.monotonic()
    reply, body = await cluster.run(cluster.a, "__call__", chat())
    assert reply.status == 429 and reply.headers["retry-after"] == "30" and body["reason"] == "upstream_error"
    assert time.monotonic() - started < 2 and len(llmock.requests()) == 1


async def test_invoke_retries_post_only_when_asked(cluster, httpbin, org):
    headers = {"X-Org-Id": org}
    register = {"key": "hb", "type": "openapi", "name": "hb", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}
    assert (await cluster.http.post(f"{P}/register", json=register, headers=headers)).status_code == 200
    # (429: retryable, and the upstream is not unhealthy, so its circuit stays closed)
    post = {"operation": "hb.redirect.to.redirect.to.post", "params": {"url": "/status/429", "status_code": 303},
            "retries": 1}
    body = (await cluster.http.post(f"{P}/invoke", json=post, headers=headers)).json()
    assert body["statusCode"] == 429 and "attempts" not in body                    # POST: not retried
    body = (await cluster.http.post(f"{P}/invoke", json={**post, "retryNonIdempotent": True},
                                    headers=headers)).json()
    assert body["statusCode"] == 429 and body["attempts"] == 2
    body = (await cluster.http.post(f"{P}/invoke", json={**post, "headers": {"Idempotency-Key": "k1"}},
                                    headers=headers)).json()
    assert body["attempts"] == 2


# --- fallbacks -----------------------------------------------------------------------------------

async def test_a_fallback_serves_from_the_second_provider(cluster, llmock):
    llmock.scenario(OPENAI_DOWN)
    response = await cluster.http.post(f"{P}/execute", json=chat(fallbacks=TO_ANTHROPIC))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["provider"] == "anthropic" and data["model"] == ANTHROPIC_MODEL and data["content"]
    assert data["metadata"]["attempts"] == 4                                 # 3 on openai, 1 on anthropic
    assert data["metadata"]["fallback"] == {"position": 1, "requested": {"provider": "openai",
                                                                          "model": "gpt-4o-mini"}}
    assert providers(llmock) == ["openai"] * 3 + ["anthropic"]


async def test_an_open_circuit_falls_back_at_once(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 500, "retry_after": 0, "times": 3})
    reply, _ = await cluster.run(cluster.a, "__call__", chat())               # opens the openai circuit
    assert reply.status == 502
    llmock.reset()
    reply, body = await cluster.run(cluster.a, "__call__", chat(fallbacks=TO_ANTHROPIC))
    assert reply.status == 200 and body["data"]["provider"] == "anthropic"
    assert body["data"]["metadata"]["attempts"] == 1 and providers(llmock) == ["anthropic"]
    # without a fallback the open circuit is the answer
    reply, body = await cluster.run(cluster.a, "__call__", chat(fallbacks=[]))
    assert reply.status == 503 and body["reason"] == "circuit_open"


async def test_the_org_default_chain_and_opting_out(cluster, llmock, org):
    await cluster.set_policy(org, {"fallbacks": {"chat.completions": TO_ANTHROPIC}})
    llmock.scenario(OPENAI_DOWN)
    headers = {"X-Org-Id": org}
    response = await cluster.http.post(f"{P}/execute", json=chat(), headers=headers)
    assert response.status_code == 200 and response.json()["data"]["provider"] == "anthropic"
    # (those three failures opened the openai circuit)
    response = await cluster.http.post(f"{P}/execute", json=chat(fallbacks=[]), headers=headers)
    assert response.status_code == 503 and response.json()["reason"] == "circuit_open"
    # the chain is per operation: embeddings have none
    response = await cluster.http.post(f"{P}/execute", headers=headers, json={
        "provider": "openai", "operation": "embeddings", "params": {"model": "text-embedding-3-small",
                                                                    "input": "x"}})
    assert response.status_code == 503
    # /v1 uses the org's chain too
    response = await cluster.http.post("/v1/chat/completions", headers=headers, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.json()["model"] == ANTHROPIC_MODEL


async def test_failures_that_are_not_retryable_do_not_fall_back(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 400, "times": 1})
    response = await cluster.http.post(f"{P}/execute", json=chat(fallbacks=TO_ANTHROPIC))
    assert response.status_code == 400 and providers(llmock) == ["openai"]


async def test_invalid_fallbacks_are_a_400(cluster):
    for fallbacks, message in (
        ([{"provider": "nope", "model": "x"}], "fallbacks[0]: Unknown provider: nope"),
        ([TO_ANTHROPIC[0], {"provider": "huggingface", "model": "m", "extra": 1}], "fallbacks.1.extra"),
    ):
        response = await cluster.http.post(f"{P}/execute", json=chat(fallbacks=fallbacks))
        assert response.status_code == 400 and message in response.json()["error"], response.text
    request = chat(fallbacks=TO_ANTHROPIC)
    request["params"]["seed"] = 1                                             # anthropic takes no seed
    response = await cluster.http.post(f"{P}/execute", json=request)
    assert response.status_code == 400 and response.json()["error"].startswith("fallbacks[0]: Invalid params")


async def test_a_stream_falls_back_before_its_first_chunk(cluster, llmock):
    # the upstream refuses the stream
    llmock.scenario(OPENAI_DOWN)
    response = await cluster.http.post(f"{P}/execute", json=chat(stream=True, fallbacks=TO_ANTHROPIC))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    final = json_events(response.text)[-1][1]["data"]
    assert final["provider"] == "anthropic" and final["metadata"]["fallback"]["position"] == 1
    # the upstream accepts the stream, then breaks before any output
    await cluster.reset_circuits()
    llmock.reset()
    llmock.scenario({"type": "stream_fault", "kind": "truncate", "after_chunks": 0, "times": None,
                     "match": {"provider": "openai", "stream": True}})
    response = await cluster.http.post(f"{P}/execute", json=chat(stream=True, fallbacks=TO_ANTHROPIC))
    events = json_events(response.text)
    assert response.status_code == 200 and events[-1][1]["data"]["provider"] == "anthropic"
    assert events[-1][1]["data"]["metadata"]["attempts"] == 4
    assert providers(llmock) == ["openai"] * 3 + ["anthropic"]


async def test_a_stream_never_falls_back_after_its_first_chunk(cluster, llmock):
    llmock.scenario({"type": "stream_fault", "kind": "disconnect", "after_chunks": 3, "times": 1})
    response = await cluster.http.post(f"{P}/execute", json=chat(stream=True, fallbacks=TO_ANTHROPIC))
    events = json_events(response.text)
    assert response.status_code == 200 and events[-1][0] == "error"
    assert any(name == "delta" for name, _ in events) and providers(llmock) == ["openai"]


# --- deadlines -----------------------------------------------------------------------------------

async def test_x_timeout_ms_bounds_the_request_end_to_end(cluster, llmock):
    llmock.scenario({"type": "delay", "seconds": 3})
    started = time.monotonic()
    response = await cluster.http.post(f"{P}/execute", json=chat(), headers={"X-Timeout-Ms": "600"})
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 504 and body["reason"] == "deadline_exceeded", body   # the worker's answer
    assert 0.5 < elapsed < 1.5, elapsed                                  # not the upstream's 3 s
    assert all(w.services.resilience.breakers.circuit("openai") is None for w in cluster.workers)


async def test_a_body_timeout_and_a_bus_deadline(cluster, llmock):
    llmock.scenario({"type": "delay", "seconds": 3, "times": 2})
    started = time.monotonic()
    reply, body = await cluster.run(cluster.a, "__call__", chat(timeout=400))
    assert reply.status == 504 and body["reason"] == "deadline_exceeded" and time.monotonic() - started < 1.5
    started = time.monotonic()
    reply = await cluster.nc.request("integrations.v1.execute", orjson.dumps(chat()), timeout=5,
                                     headers={"x-api-key": CALLER_KEY, "x-timeout-ms": "400"})
    assert reply.headers["x-status"] == "504" and time.monotonic() - started < 1.5
    # a request that arrives after its deadline is not started at all
    past = str(int(time.time() * 1000) - 1)
    reply = await cluster.nc.request("integrations.v1.execute", orjson.dumps(chat()), timeout=5,
                                     headers={"x-api-key": CALLER_KEY, "x-deadline": past})
    assert reply.headers["x-status"] == "504"
    assert orjson.loads(reply.data)["reason"] == "deadline_exceeded"


async def test_retries_stop_at_the_deadline(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 503, "retry_after": 0.3, "times": None})
    started = time.monotonic()
    response = await cluster.http.post(f"{P}/execute", json=chat(), headers={"X-Timeout-Ms": "700"})
    assert response.status_code == 502 and time.monotonic() - started < 1.5
    assert len(llmock.requests()) == 2                      # a third attempt would not fit in the budget


async def test_a_stream_deadline(cluster, llmock):
    llmock.scenario({"type": "slow_first_token", "seconds": 3})
    started = time.monotonic()
    response = await cluster.http.post(f"{P}/execute", json=chat(stream=True), headers={"X-Timeout-Ms": "700"})
    assert response.status_code == 504 and response.json()["reason"] == "deadline_exceeded"
    assert time.monotonic() - started < 2.0


async def test_invoke_honours_the_caller_deadline(cluster, httpbin, org):
    headers = {"X-Org-Id": org}
    register = {"key": "hb", "type": "openapi", "name": "hb", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}
    assert (await cluster.http.post(f"{P}/register", json=register, headers=headers)).status_code == 200
    started = time.monotonic()
    response = await cluster.http.post(f"{P}/invoke", headers={**headers, "X-Timeout-Ms": "500"},
                                       json={"operation": "hb.delay.response.delay.delay.get", "params": {"delay": 3}})
    assert response.status_code == 504 and response.json()["reason"] == "deadline_exceeded"
    assert time.monotonic() - started < 2.0
