"""Providers that exist only in a providers file, executed end to end: a worker built by
`build_app(settings)` from that file, a plain nats-py client and the HTTP adapter.

The worker runs on its own private nats-server: on the session's server it would share the
`integrations` queue group with the session worker, which does not know these providers, and
NATS would hand it half of the requests.

Upstreams: `acme` is the HuggingFace fake's OpenAI-compatible routes (it answers 401 unless
the bearer key is the one the file points at), `mistral` repoints the packaged preset at
llmock's Mistral routes, `acme-header` sends its key in a named header, `acme-plain` streams
without asking for usage.
"""

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from api.app import create_app
from api.settings import ApiSettings
from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from service.providers.capabilities import build_provider_table
from service.providers.models import cost_usd_micros, model_info
from service.settings import Settings
from tests.conftest import CALLER_KEY
from tests.fakes.huggingface import API_KEY as HF_KEY
from tests.streaming.helpers import json_events, parse_sse

SUBJECT = "integrations.v1.execute"

PROVIDERS_FILE = """\
providers:
  acme:
    displayName: Acme LLM
    baseUrl: ${ACME_TEST_BASE_URL}/v1
    credentialEnv: ACME_TEST_API_KEY
    operations: [chat.completions, text.generation, embeddings]
    excludeParams: [seed]
    models:
      - {id: acme-large, name: Acme Large, capabilities: [chat, function_calling], contextWindow: 32000,
         inputPrice: 2.0, outputPrice: 6.0}
  acme-header:
    baseUrl: ${ACME_TEST_BASE_URL}/v1
    auth: header
    authHeader: X-Api-Key
    credentialEnv: ACME_TEST_API_KEY
    operations: [chat.completions]
  acme-nokey:
    baseUrl: ${ACME_TEST_BASE_URL}/v1
    credentialEnv: ACME_TEST_UNSET_KEY
    operations: [chat.completions]
  mistral:
    baseUrl: ${LLMOCK_URL}/mistral/v1
    operations: [chat.completions]
  acme-plain:
    baseUrl: ${ACME_TEST_BASE_URL}/v1
    credentialEnv: ACME_TEST_API_KEY
    operations: [chat.completions]
    streamUsage: false
"""


@pytest.fixture(scope="module")
def configured_env(llmock, hf_fake) -> dict[str, str]:
    env = {"ACME_TEST_BASE_URL": hf_fake.url, "ACME_TEST_API_KEY": HF_KEY, "LLMOCK_URL": llmock.url,
           "MISTRAL_API_KEY": "mistral-test-key"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
async def configured(configured_env, data_dir) -> AsyncIterator[tuple]:
    folder = Path(tempfile.mkdtemp(prefix="test-providers-"))
    (folder / "providers.yaml").write_text(PROVIDERS_FILE)
    server = EmbeddedNats(folder / "js")
    url = server.start()
    settings = Settings(_env_file=None, nats_url=url, data_dir=data_dir, api_keys=CALLER_KEY, upstream_timeout_s=3,
                        providers_file=folder / "providers.yaml")
    try:
        app = build_app(settings)
        async with app:
            client = await nats.connect(url)
            api = create_app(ApiSettings(_env_file=None, nats_url=url, worker_silence_s=3, ready_timeout_s=1))
            async with api.router.lifespan_context(api), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=api), base_url="http://gateway",
                    headers={"X-API-Key": CALLER_KEY}, timeout=30) as http:
                yield app, client, http
            await client.close()
    finally:
        server.stop()


async def execute(client, provider, operation="chat.completions", **params):
    params.setdefault("model", "acme-large")
    if operation != "embeddings":
        params.setdefault("messages", [{"role": "user", "content": "Hello"}])
    msg = await client.request(SUBJECT, orjson.dumps({"provider": provider, "operation": operation,
                                                      "params": params}),
                               timeout=15, headers={"x-api-key": CALLER_KEY})
    return int(msg.headers["x-status"]), orjson.loads(msg.data)


async def test_a_provider_from_the_file_runs_chat_generation_and_embeddings(configured, hf_fake):
    _, client, _ = configured
    status, body = await execute(client, "acme", maxTokens=9, messages=[
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    assert status == 200, body
    assert body["data"]["provider"] == "acme" and body["data"]["content"] == "hf says: Hello"
    request = hf_fake.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["headers"]["Authorization"] == f"Bearer {HF_KEY}"
    assert request["body"] == {"model": "acme-large", "max_tokens": 9, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]}

    status, body = await execute(client, "acme", "text.generation", messages=None, prompt="Once upon")
    assert status == 200 and body["data"]["content"] == "hf says: Once upon"

    status, body = await execute(client, "acme", "embeddings", model="acme-embed", input=["a", "b"])
    assert status == 200 and len(body["data"]["embeddings"]) == 2 and body["data"]["provider"] == "acme"


async def test_the_file_declares_what_a_provider_accepts(configured):
    _, client, _ = configured
    status, body = await execute(client, "acme", seed=7)
    assert status == 400 and body["reason"] == "unsupported_parameter" and "seed" in body["error"]
    status, body = await execute(client, "acme", "responses", input="x")
    assert status == 400 and body["reason"] == "unsupported_operation"


async def test_auth_styles_and_missing_keys(configured, hf_fake):
    _, client, _ = configured
    status, body = await execute(client, "acme-header")
    # The HF fake wants a bearer token, so the named header is refused: proof it was sent as configured.
    assert status == 502 and body["reason"] == "provider_rejected_credentials" and body["provider"] == "acme-header"
    sent = {k.lower(): v for k, v in hf_fake.requests[-1]["headers"].items()}
    assert sent["x-api-key"] == HF_KEY and "authorization" not in sent

    status, body = await execute(client, "acme-nokey")
    assert status == 400 and body["reason"] == "provider_credential_missing"
    assert "ACME_TEST_UNSET_KEY" in body["error"]


async def test_a_preset_repointed_by_the_file(configured, llmock):
    _, client, _ = configured
    status, body = await execute(client, "mistral", model="mistral-small-latest")
    assert status == 200, body
    assert body["data"]["provider"] == "mistral" and body["data"]["content"]
    assert llmock.requests()[-1]["path"] == "/mistral/v1/chat/completions"
    # The other presets are still there, waiting for their keys.
    status, body = await execute(client, "google", model="gemini-2.5-flash")
    assert status == 400 and body["reason"] == "provider_credential_missing" and "GEMINI_API_KEY" in body["error"]


async def test_over_http_and_in_the_model_table(configured):
    app, _, http = configured
    response = await http.post("/api/integrations/execute", json={
        "provider": "acme", "operation": "chat.completions",
        "params": {"model": "acme-large", "prompt": "via HTTP"}})
    assert response.status_code == 200 and response.json()["data"]["content"] == "hf says: via HTTP"
    spec = app.services.providers["acme"]
    assert spec.source == "config" and spec.default_model == "acme-large" and spec.display_name == "Acme LLM"
    assert model_info("acme", "acme-large").context_window == 32000
    assert cost_usd_micros("acme", "acme-large", 1000, 100) == 2 * 1000 + 6 * 100


def test_the_example_file_at_the_repository_root_is_valid():
    root = Path(__file__).resolve().parents[2]
    table = build_provider_table(Settings(_env_file=None, providers_file=root / "providers.example.yaml"))
    assert table["llamacpp"].base_url == "http://localhost:8080/v1" and not table["llamacpp"].needs_credential


async def test_configured_providers_stream_on_execute_and_v1(configured, hf_fake):
    _, _, http = configured
    body = {"provider": "acme", "operation": "chat.completions", "stream": True,
            "params": {"model": "acme-large", "prompt": "stream me"}}
    response = await http.post("/api/integrations/execute", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = json_events(response.text)
    assert "".join(d["content"] for name, d in events if name == "delta") == "hf says: stream me"
    data = events[-1][1]["data"]
    assert data["provider"] == "acme" and data["usage"] == {"promptTokens": 7, "completionTokens": 4,
                                                             "totalTokens": 11}
    assert "usageEstimated" not in data["metadata"]
    sent = hf_fake.requests[-1]
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["headers"]["Authorization"] == f"Bearer {HF_KEY}"

    # text.generation of a configured provider is the chat API too: it streams.
    response = await http.post("/api/integrations/execute", json={**body, "operation": "text.generation"})
    assert response.status_code == 200 and json_events(response.text)[-1][0] == "done"
    # Embeddings do not stream.
    response = await http.post("/api/integrations/execute", json={
        "provider": "acme", "operation": "embeddings", "stream": True, "params": {"model": "e", "input": "x"}})
    assert response.status_code == 400 and response.json()["reason"] == "stream_unsupported"

    # streamUsage: false: no stream_options upstream, usage estimated by the gateway.
    response = await http.post("/api/integrations/execute", json={**body, "provider": "acme-plain"})
    data = json_events(response.text)[-1][1]["data"]
    assert data["metadata"]["usageEstimated"] is True and data["usage"]["completionTokens"] > 0
    assert "stream_options" not in hf_fake.requests[-1]["body"] and hf_fake.requests[-1]["body"]["stream"] is True

    # The OpenAI-compatible route reaches configured providers as provider/model.
    response = await http.post("/v1/chat/completions", json={
        "model": "acme/acme-large", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello v1"}]})
    assert response.status_code == 200
    chunks = [orjson.loads(d) for name, d in parse_sse(response.text) if d != "[DONE]"]
    assert response.text.rstrip().endswith("data: [DONE]")
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text == "hf says: hello v1" and chunks[-1]["usage"]["total_tokens"] == 11


async def test_a_provider_from_the_file_is_an_mcp_tool(configured, hf_fake):
    """The MCP endpoint lists a file-defined provider's operations as tools and calls them through
    the same execute pipeline (official SDK client over real HTTP)."""
    import asyncio

    import httpx2
    import uvicorn
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.conftest import free_port

    _, client, _ = configured
    port = free_port()
    url = client.connected_url
    api = create_app(ApiSettings(_env_file=None, nats_url=f"nats://{url.hostname}:{url.port}", worker_silence_s=3))
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "the api did not start"
        async with httpx2.AsyncClient(headers={"X-API-Key": CALLER_KEY}, timeout=30) as http_client, \
                Client(streamable_http_client(f"http://127.0.0.1:{port}/api/integrations/mcp",
                                              http_client=http_client)) as mcp:
            names = set()
            cursor = None
            while True:
                page = await mcp.list_tools(cursor=cursor)
                names |= {tool.name for tool in page.tools}
                if not (cursor := page.next_cursor):
                    break
            assert {"acme_chat_completions_create", "acme_embeddings_create"} <= names
            result = await mcp.call_tool("acme_chat_completions_create", {
                "model": "acme-large", "messages": [{"role": "user", "content": "hello from an mcp client"}]})
        assert result.is_error is False, result
        assert result.structured_content["provider"] == "acme" and result.structured_content["usage"]["totalTokens"] > 0
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
