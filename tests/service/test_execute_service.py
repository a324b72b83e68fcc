"""The execute pipeline without the bus, against real upstreams on loopback, for
configurations the shared worker does not use (other wire formats, missing keys, dead ports)."""

import orjson
import pytest

from service.commands import Command, run_command
from service.container import Services
from service.settings import Settings
from tests.conftest import CALLER_KEY, free_port
from tests.fakes.huggingface import API_KEY as HF_KEY


def make_services(data_dir, **overrides) -> Services:
    base = {"_env_file": None, "data_dir": data_dir, "api_keys": CALLER_KEY, "upstream_timeout_s": 3}
    return Services(Settings(**{**base, **overrides}))


async def run(services: Services, body: dict):
    command = Command(orjson.dumps(body), {"x-api-key": CALLER_KEY}, "req_test")
    reply = await run_command(services.execute, command)
    return reply.status, orjson.loads(reply.body)


@pytest.fixture
async def tgi_tei(tmp_path, hf_fake):
    services = make_services(tmp_path, huggingface_base_url=hf_fake.url, huggingface_api_key=HF_KEY,
                             huggingface_text_generation_api="tgi", huggingface_embeddings_api="tei")
    yield services
    await services.close()


async def test_tgi_generate_and_tei_embed(tgi_tei, hf_fake):
    status, body = await run(tgi_tei, {"provider": "huggingface", "operation": "text.generation",
                                       "params": {"model": "bigscience/bloom", "prompt": "Once upon", "topK": 5}})
    assert status == 200, body
    assert hf_fake.requests[-1]["path"] == "/generate"
    assert hf_fake.requests[-1]["body"]["parameters"]["top_k"] == 5
    assert body["data"]["finishReason"] == "length" and body["data"]["usage"]["completionTokens"] == 5

    status, body = await run(tgi_tei, {"provider": "huggingface", "operation": "embeddings",
                                       "params": {"model": "BAAI/bge-m3", "input": ["a", "b"]}})
    assert status == 200 and hf_fake.requests[-1]["path"] == "/embed" and len(body["data"]["embeddings"]) == 2


async def test_openai_style_embeddings_on_huggingface(tmp_path, hf_fake):
    services = make_services(tmp_path, huggingface_base_url=hf_fake.url, huggingface_api_key=HF_KEY,
                             huggingface_embeddings_api="openai")
    try:
        status, body = await run(services, {"provider": "huggingface", "operation": "embeddings",
                                            "params": {"model": "m", "input": ["first", "second"]}})
    finally:
        await services.close()
    assert status == 200
    first, second = body["data"]["embeddings"]
    assert first != second and hf_fake.requests[-1]["path"] == "/v1/embeddings"


async def test_missing_provider_key_is_a_400_auth_envelope(tmp_path):
    services = make_services(tmp_path, openai_api_key=None)
    try:
        status, body = await run(services, {"provider": "openai", "operation": "chat.completions",
                                            "params": {"model": "m", "prompt": "x"}})
    finally:
        await services.close()
    assert status == 400 and body["category"] == "auth" and body["reason"] == "provider_credential_missing"
    assert "OPENAI_API_KEY" in body["error"] and body["provider"] == "openai"


async def test_dead_upstream_is_a_retryable_network_error(tmp_path):
    services = make_services(tmp_path, openai_api_key="sk-x", openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    try:
        status, body = await run(services, {"provider": "openai", "operation": "chat.completions",
                                            "params": {"model": "m", "prompt": "x"}})
    finally:
        await services.close()
    assert status == 502 and body["category"] == "network" and body["retryable"] is True
    assert body["reason"] == "upstream_unreachable"


async def test_a_bug_in_a_handler_becomes_a_500_envelope():
    async def broken(command):
        raise RuntimeError("bug")

    reply = await run_command(broken, Command(b"{}", {}, "req_x"))
    body = orjson.loads(reply.body)
    assert reply.status == 500 and body["category"] == "internal" and body["requestId"] == "req_x"
    assert "bug" not in body["error"]
