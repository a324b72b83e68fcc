"""symbia-labs over `integrations.v1.execute`, against a local stand-in for the Models service
(tests/fakes/models_service.py), plus its liveness probe and live model list."""

from service.providers.capabilities import build_provider_table
from service.providers.discovery import ProviderProbe
from service.settings import Settings
from service.transport import UpstreamTransport
from tests.bus.test_execute_bus import execute
from tests.conftest import free_port
from tests.streaming.helpers import json_events


def local(operation="chat.completions", **params):
    params.setdefault("model", "smollm2-135m")
    return {"provider": "symbia-labs", "operation": operation, "params": params}


async def test_chat_needs_no_credential_and_sends_service_auth(worker, nc, models_service):
    status, body, _ = await execute(nc, local(messages=[{"role": "developer", "content": "Be brief."},
                                                        {"role": "user", "content": "Hi"}], maxTokens=20))
    assert status == 200, body
    data = body["data"]
    assert data["provider"] == "symbia-labs" and data["content"] == "local says: Hi"
    assert data["metadata"]["local"] is True and data["finishReason"] == "stop"
    assert data["usage"] == {"promptTokens": 5, "completionTokens": 3, "totalTokens": 8}
    request = models_service.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["headers"]["x-service-auth"] == "internal"
    assert "authorization" not in request["headers"]
    # No injected temperature or stream flag; the developer role becomes system for this server.
    assert request["body"] == {"model": "smollm2-135m", "max_tokens": 20, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}


async def test_completions_alias_and_embeddings(worker, nc, models_service):
    status, body, _ = await execute(nc, local("completions", prompt="Once upon"))
    assert status == 200 and body["data"]["content"] == "local says: Once upon"
    status, body, _ = await execute(nc, local("embeddings", model="bge-small", input=["a", "bb"]))
    assert status == 200, body
    assert body["data"]["embeddings"] == [[1.0, 0.5, 0.0], [2.0, 0.5, 1.0]]
    assert models_service.requests[-1]["path"] == "/v1/embeddings"


async def test_what_the_models_service_cannot_take(worker, nc, models_service):
    status, body, _ = await execute(nc, local(prompt="x", tools=[{"type": "function", "function": {"name": "f"}}]))
    assert status == 400 and body["reason"] == "unsupported_parameter" and "tools" in body["error"]
    status, body, _ = await execute(nc, local(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]))
    assert status == 400 and body["category"] == "validation" and "string content" in body["error"]
    status, body, _ = await execute(nc, local(model="missing-model", prompt="x"))
    assert status == 400 and body["reason"] == "model_not_found"


async def test_available_when_the_models_service_answers_and_models_listed_from_it(worker, models_service):
    probe, spec = worker.services.provider_probe, worker.services.providers["symbia-labs"]
    assert await probe.available(spec) is True
    models = await probe.models(spec)
    assert [m.id for m in models] == ["smollm2-135m", "bge-small"]   # the remote model it brokers is left out
    chat, embed = models
    assert chat.capabilities == ("chat", "completion") and chat.context_window == 2048
    assert embed.capabilities == ("embedding", "chat") and chat.input_price == 0.0
    assert models_service.requests[-1]["headers"]["x-service-auth"] == "internal"
    # Providers without a health URL leave the decision to credentials.
    assert await probe.available(worker.services.providers["openai"]) is None


async def test_unavailable_and_no_models_when_the_models_service_is_down():
    settings = Settings(_env_file=None, models_service_url=f"http://127.0.0.1:{free_port()}")
    spec = build_provider_table(settings)["symbia-labs"]
    transport = UpstreamTransport(4, 1 << 20)
    try:
        probe = ProviderProbe(transport, timeout_s=1)
        assert await probe.available(spec) is False
        assert await probe.models(spec) == ()
    finally:
        await transport.close()


async def test_chat_streams_without_asking_for_usage(http, models_service):
    """The Models service streams OpenAI chunks; the gateway sends only `stream: true` (the
    original's own field) and estimates usage it was not given."""
    response = await http.post("/api/integrations/execute", json={**local(prompt="Hi there"), "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = json_events(response.text)
    assert "".join(d["content"] for name, d in events if name == "delta") == "local says: Hi there"
    name, final = events[-1]
    data = final["data"]
    assert name == "done" and data["provider"] == "symbia-labs" and data["finishReason"] == "stop"
    assert data["metadata"]["local"] is True and data["metadata"]["usageEstimated"] is True
    assert data["usage"]["completionTokens"] > 0
    request = models_service.requests[-1]
    assert request["headers"]["x-service-auth"] == "internal"
    assert request["body"] == {"model": "smollm2-135m", "stream": True,
                               "messages": [{"role": "user", "content": "Hi there"}]}
