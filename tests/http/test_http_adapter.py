"""The HTTP adapter in front of a real bus and worker: routes, status and byte forwarding,
body limits, envelopes for everything that goes wrong before a worker answers."""

import asyncio
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from contracts.envelope import ErrorEnvelope
from service.embedded_nats import EmbeddedNats
from tests.conftest import CALLER_KEY

CHAT = {"provider": "openai", "operation": "chat.completions",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}


@pytest.mark.parametrize("path", ["/api/integrations/execute", "/api/api/integrations/execute"])
async def test_execute_over_http_forwards_the_workers_bytes(http, path):
    response = await http.post(path, json=CHAT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["data"]["provider"] == "openai"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == body["requestId"]


async def test_security_headers_and_trace_id(http):
    response = await http.post("/api/integrations/execute", json=CHAT, headers={"x-trace-id": "trace-123"})
    assert response.headers["x-trace-id"] == "trace-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await http.get("/health", headers={"traceparent": traceparent})
    assert response.headers["x-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_unauthenticated_is_401_envelope(http):
    response = await http.post("/api/integrations/execute", json=CHAT, headers={"X-API-Key": "wrong"})
    assert response.status_code == 401
    ErrorEnvelope.model_validate(response.json())


async def test_malformed_json_is_400_envelope(http):
    response = await http.post("/api/integrations/execute", content=b"{not json",
                                headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["reason"] == "invalid_json"


async def test_oversize_bodies_are_413_with_or_without_content_length(http):
    big = b"x" * (10 * 1024 * 1024 + 1)
    response = await http.post("/api/integrations/execute", content=big)
    assert response.status_code == 413 and response.json()["reason"] == "body_too_large"

    async def chunked():
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    response = await http.post("/api/integrations/execute", content=chunked())
    assert response.status_code == 413 and response.json()["category"] == "validation"


async def test_a_body_above_the_nats_limit_goes_through(http, hf_fake):
    image = "data:image/png;base64," + "B" * (3 * 1024 * 1024)
    response = await http.post("/api/integrations/execute", json={
        "provider": "huggingface", "operation": "image.description", "params": {
            "model": "Qwen/Qwen2.5-VL-7B-Instruct", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image}}]}]}})
    assert response.status_code == 200, response.text[:300]
    assert hf_fake.requests[-1]["body"]["messages"][0]["content"][0]["image_url"]["url"] == image


async def test_large_reply_comes_back_whole(http):
    response = await http.post("/api/integrations/execute", json={
        "provider": "openai", "operation": "embeddings",
        "params": {"model": "text-embedding-3-small", "input": [f"text {i}" for i in range(120)]}})
    assert response.status_code == 200 and len(response.json()["data"]["embeddings"]) == 120


async def test_retry_after_is_passed_to_http_clients(http, llmock):
    llmock.scenario({"type": "fail", "status": 429, "retry_after": 9})
    response = await http.post("/api/integrations/execute", json=CHAT)
    assert response.status_code == 429 and response.headers["retry-after"] == "9"


async def test_unknown_routes_and_methods_are_envelopes(http):
    response = await http.get("/api/integrations/nope")
    assert response.status_code == 404 and response.json()["category"] == "not_found"
    response = await http.get("/api/integrations/execute")
    assert response.status_code == 405 and response.json()["success"] is False


async def test_health_and_readiness(http):
    for path in ("/health", "/health/live", "/health/ready"):
        response = await http.get(path)
        assert response.status_code == 200 and response.json()["status"] == "ok", (path, response.text)
    assert (await http.get("/health/ready")).json()["checks"]["workers"]["status"] == "ok"


async def test_generated_docs_describe_the_real_routes(http):
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    execute = doc["paths"]["/api/integrations/execute"]["post"]
    assert execute["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExecuteRequest")
    assert "ExecuteParams" in doc["components"]["schemas"] and "ErrorEnvelope" in doc["components"]["schemas"]
    assert (await http.get("/docs/openapi.json")).json() == doc
    llms = (await http.get("/llms.txt")).text
    assert "POST /api/integrations/execute" in llms and "/api/api/integrations/execute" not in llms
    full = (await http.get("/docs/llms-full.txt")).text
    assert "integrations.v1.execute" in full and "ExecuteRequest" in full


@asynccontextmanager
async def lonely_gateway(**settings):
    """An adapter on a NATS server of its own, with no workers."""
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="lonely-")) / "js")
    url = server.start()
    app = create_app(ApiSettings(_env_file=None, nats_url=url, **settings))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                         headers={"X-API-Key": CALLER_KEY}) as client:
                yield client, server, url
    finally:
        server.stop()


async def test_no_workers_is_503_at_once():
    async with lonely_gateway() as (client, _, _):
        started = time.monotonic()
        response = await client.post("/api/integrations/execute", json=CHAT)
        assert response.status_code == 503 and response.json()["reason"] == "no_workers"
        assert response.json()["retryable"] is True
        assert time.monotonic() - started < 1
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["workers"]["status"] == "unhealthy"


async def test_a_worker_that_dies_mid_request_is_503_not_a_hang():
    import nats

    async with lonely_gateway(worker_silence_s=1.0) as (client, _, url):
        silent = await nats.connect(url)  # takes the request, then never answers (a killed worker)

        async def swallow(_msg):
            pass

        await silent.subscribe("integrations.v1.execute", queue="integrations", cb=swallow)
        await silent.flush()  # the server knows the subscription before the request arrives
        started = time.monotonic()
        response = await client.post("/api/integrations/execute", json=CHAT)
        await silent.close()
    assert response.status_code == 503 and response.json()["reason"] == "worker_lost"
    assert time.monotonic() - started < 3


async def test_a_dead_nats_server_is_503_bus_unavailable():
    async with lonely_gateway() as (client, server, _):
        server.stop()
        await asyncio.sleep(0.3)
        response = await client.post("/api/integrations/execute", json=CHAT)
        assert response.status_code == 503 and response.json()["reason"] == "bus_unavailable"
        assert (await client.get("/health/ready")).status_code == 503
        assert (await client.get("/health/live")).status_code == 200
