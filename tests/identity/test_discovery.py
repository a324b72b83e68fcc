"""Discovery routes and subjects against the reference shapes (§5): through the HTTP adapter of
the Identity-mode gateway (with Catalog), from a plain nats-py client, and in local mode; the
per-credential model lists; the circuit-breaker and reachability seams."""

import asyncio
import dataclasses

import orjson
import pytest

from contracts.discovery import (
    AllModels,
    CapabilitiesResponse,
    ModelsList,
    ProviderConfig,
    ProvidersList,
    StatsResponse,
    StatusResponse,
)
from service.commands import Command, run_command
from service.container import Services
from service.discovery import BreakerSnapshot
from tests.identity.conftest import identity_mode_settings

P = "/api/integrations"
BUILTINS = ["openai", "anthropic", "huggingface", "symbia-labs"]
CAPABILITY_KEYS = ["provider", "name", "displayName", "description", "baseUrl", "defaultModel",
                   "supportedOperations", "models", "access", "rateLimits", "status"]


def auth(token: str, org: str | None = None) -> dict:
    return {"authorization": f"Bearer {token}", **({"x-org-id": org} if org else {})}


@pytest.mark.parametrize("prefix", ["/api", "/api/api"])
async def test_open_routes_need_no_credentials(identity_http, identity_worker, prefix):
    integrations = prefix + "/integrations"
    providers = (await identity_http.get(f"{integrations}/providers")).json()
    ProvidersList.model_validate(providers)
    assert [p["name"] for p in providers["providers"]] == BUILTINS                    # the capability table
    openai = providers["providers"][0]
    assert list(openai) == ["name", "baseUrl", "defaultModel", "supportedOperations"]
    assert openai["baseUrl"] == "https://api.openai.com/v1"                           # from Catalog
    assert openai["supportedOperations"] == ["chat.completions", "image.description", "responses", "embeddings"]

    config = (await identity_http.get(f"{integrations}/providers/openai")).json()
    ProviderConfig.model_validate(config)
    assert config["endpoints"]["embeddings"] == "/embeddings" and config["authType"] == "bearer"
    assert config["rateLimits"] == {"requestsPerMinute": 60, "tokensPerMinute": 40000}

    for unknown in ("google", "acme-llm"):        # presets off: google is not in this table
        response = await identity_http.get(f"{integrations}/providers/{unknown}")
        assert response.status_code == 404 and response.json()["error"] == f"Provider not found: {unknown}"
        assert response.json()["reason"] == "unknown_provider"

    status = (await identity_http.get(f"{integrations}/status")).json()
    StatusResponse.model_validate(status)
    assert status["status"] == "healthy" and list(status) == ["status", "providers", "note", "circuitBreaker"]
    assert status["providers"][0] == {"name": "openai", "registered": True, "credential": "not_checked",
                                      "configured": True}
    assert status["circuitBreaker"]["openai"] == {"state": "closed", "failures": 0, "lastFailure": "never"}

    # the stock bootstrap's Telegram integration is registered in the background (its spec: on the fake)
    store = identity_worker.services.registry_store
    for _ in range(200):
        if store.get(None, "telegram") is not None:
            break
        await asyncio.sleep(0.05)
    stats = (await identity_http.get(f"{prefix}/stats")).json()
    StatsResponse.model_validate(stats)
    assert stats == {"totalProviders": 4, "configuredProviders": 4, "totalIntegrations": 1}


@pytest.mark.parametrize("path", [f"{P}/capabilities", f"{P}/models", f"{P}/providers/openai/models"])
async def test_credential_aware_routes_need_a_caller(identity_http, path):
    response = await identity_http.get(path)
    assert response.status_code == 401 and response.json()["reason"] == "unauthenticated"


async def test_capabilities_reflect_the_callers_credentials(identity_http, directory):
    body = (await identity_http.get(f"{P}/capabilities", headers=auth(directory.alice, "acme"))).json()
    CapabilitiesResponse.model_validate(body)
    assert list(body) == ["providers", "byProvider", "modelsByPurpose", "defaults", "fetchedAt"]
    assert [p["provider"] for p in body["providers"]] == BUILTINS
    openai, huggingface = body["byProvider"]["openai"], body["byProvider"]["huggingface"]
    local = body["byProvider"]["symbia-labs"]
    assert local["status"] == "unavailable" and local["access"]["credentialSource"] == "none"   # service down
    assert list(openai) == CAPABILITY_KEYS
    assert openai["name"] == "Openai" and openai["displayName"] == "OpenAI"
    assert openai["status"] == "available" and openai["defaultModel"] == "gpt-4o-mini"
    assert openai["access"] == {"hasCredential": True, "credentialSource": "personal", "isEnabled": True,
                                "lastUsedAt": None}
    assert [m["id"] for m in openai["models"]] == ["gpt-4o-alice", "gpt-4o-mini", "text-embedding-3-small"]
    assert huggingface["status"] == "unavailable" and huggingface["statusMessage"] == "No API key configured"
    assert huggingface["access"]["credentialSource"] == "none" and huggingface["models"]     # the static list
    assert body["byProvider"]["openai"] == openai
    assert body["defaults"] == {"chatProvider": "openai", "chatModel": "gpt-4o-mini", "embeddingProvider": "openai",
                                "embeddingModel": "text-embedding-3-small"}
    purposes = body["modelsByPurpose"]
    assert purposes["chat"][0] == {"provider": "openai", "model": openai["models"][0]}
    assert [e["provider"] for e in purposes["chat"]] == sorted(
        (e["provider"] for e in purposes["chat"]), key=["openai", "anthropic", "huggingface", "symbia-labs"].index)
    assert {e["model"]["id"] for e in purposes["embedding"] if e["provider"] == "openai"} == {"text-embedding-3-small"}

    bob = (await identity_http.get(f"{P}/capabilities", headers=auth(directory.bob))).json()
    assert bob["byProvider"]["openai"]["access"]["credentialSource"] == "org-wide"
    denied = await identity_http.get(f"{P}/capabilities", headers=auth(directory.bob, "globex"))
    assert denied.status_code == 403 and denied.json()["reason"] == "org_forbidden"


async def test_model_lists_are_cached_per_credential_not_per_provider(identity_http, directory, keyed_openai,
                                                                      identity_fake):
    def ids(response) -> list[str]:
        assert response.status_code == 200, response.text
        ModelsList.model_validate(response.json())
        return [m["id"] for m in response.json()["models"]]

    path = f"{P}/providers/openai/models"
    carol = identity_fake.add_user("carol2", ["globex"])        # globex's org-wide key, not yet listed
    before = keyed_openai.count("/v1/models")
    assert ids(await identity_http.get(path, headers=auth(carol))) == [
        "gpt-4o-globex-org", "gpt-4o-mini", "text-embedding-3-small"]
    assert ids(await identity_http.get(path, headers=auth(carol))) == [
        "gpt-4o-globex-org", "gpt-4o-mini", "text-embedding-3-small"]
    assert keyed_openai.count("/v1/models") == before + 1             # listed once for that key
    assert ids(await identity_http.get(path, headers=auth(directory.carol)))[0] == "gpt-4o-carol"
    assert keyed_openai.count("/v1/models") == before + 2             # another key, another listing
    nobody = identity_fake.add_user("hank", ["initech"])
    static = ids(await identity_http.get(path, headers=auth(nobody)))
    assert static[0] == "gpt-5.2" and "gpt-4o-carol" not in static    # no key: the static list, nobody else's
    embeddings = ids(await identity_http.get(f"{path}?capability=embedding,VISION", headers=auth(nobody)))
    assert "text-embedding-3-small" in embeddings and "gpt-4o" in embeddings and "gpt-5.2-codex" not in embeddings
    unknown = await identity_http.get(f"{P}/providers/google/models", headers=auth(nobody))
    assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_provider"


async def test_all_models_by_capability_or_purpose(identity_http, directory):
    headers = auth(directory.alice, "acme")
    body = (await identity_http.get(f"{P}/models?purpose=embeddings", headers=headers)).json()
    AllModels.model_validate(body)
    assert body["models"]["openai"] == [{"id": "text-embedding-3-small", "name": "Text Embedding 3 Small",
                                         "contextWindow": 8191, "capabilities": ["embedding"], "inputPricing": 0.02,
                                         "outputPricing": 0.0, "provider": "openai"}]
    assert body["all"] == [m for models in body["models"].values() for m in models]
    assert all("embedding" in m["capabilities"] for m in body["all"])
    both = (await identity_http.get(f"{P}/models?capability=function_calling&purpose=embedding",
                                    headers=headers)).json()
    assert [m["id"] for m in both["models"]["openai"]] == ["gpt-4o-alice", "gpt-4o-mini"]   # capability wins
    assert all("function_calling" in m["capabilities"] for m in both["all"])
    none = (await identity_http.get(f"{P}/models?capability=reasoning", headers=headers)).json()
    assert "openai" not in none["models"]             # alice's live list has no reasoning model: omitted
    everything = (await identity_http.get(f"{P}/models?purpose=unknown", headers=headers)).json()
    assert {"openai", "anthropic", "huggingface"} <= set(everything["models"])


async def test_discovery_subjects_from_a_plain_nats_client(identity_worker, inc, directory):
    async def ask(subject: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        msg = await inc.request(subject, body, timeout=10, headers=headers)
        return int(msg.headers["x-status"]), orjson.loads(msg.data)

    assert (await ask("integrations.v1.status", b""))[0] == 200
    status, body = await ask("integrations.v1.providers.get", b'{"provider": "huggingface"}')
    assert status == 200 and body["provider"] == "huggingface"
    status, body = await ask("integrations.v1.providers.get", b"{}")
    assert status == 400 and body["reason"] == "invalid_request"
    alice = {"authorization": f"Bearer {directory.alice}"}
    status, body = await ask("integrations.v1.providers.models", b'{"provider": "openai", "capability": "chat"}', alice)
    assert status == 200 and all("chat" in m["capabilities"] for m in body["models"])
    status, body = await ask("integrations.v1.capabilities", b"not json", alice)
    assert status == 400 and body["reason"] == "invalid_json"


async def test_local_mode_capabilities_use_the_environments_keys(http):
    body = (await http.get(f"{P}/capabilities")).json()
    CapabilitiesResponse.model_validate(body)
    by_name = body["byProvider"]
    for name in ("openai", "anthropic", "huggingface"):  # keys in the session worker's environment
        assert by_name[name]["status"] == "available" and by_name[name]["access"]["credentialSource"] == "env"
    assert by_name["symbia-labs"]["status"] == "available"                 # its Models service answers
    assert by_name["symbia-labs"]["access"]["credentialSource"] == "none"
    assert by_name["google"]["status"] == "unavailable"                    # a preset without a key
    for entry in body["providers"]:
        assert "rateLimits" not in entry                 # built-in defaults carry none
    assert (await http.get(f"{P}/providers/openai")).json()["authType"] == "bearer"


class OpenBreaker:
    def snapshot(self, provider: str) -> BreakerSnapshot:
        if provider == "openai":
            return BreakerSnapshot(state="open", failures=5, last_failure="2026-01-01T00:00:00.000Z",
                                   retry_after_s=30)
        return BreakerSnapshot()


async def call(handler, headers: dict | None = None) -> dict:
    reply = await run_command(handler, Command(b"", headers or {}, "req_t"))
    assert reply.status == 200, reply.body
    return orjson.loads(reply.body)


async def test_breaker_and_reachability_seams(identity_fake, directory, keyed_openai):
    services = Services(identity_mode_settings(identity_fake, keyed_openai))
    try:
        discovery = services.discovery
        discovery.breakers = OpenBreaker()
        headers = auth(directory.alice, "acme")
        openai = (await call(discovery.capabilities, headers))["byProvider"]["openai"]
        assert openai["status"] == "degraded" and openai["statusMessage"].startswith("Circuit open")
        status = await call(discovery.status)
        assert status["status"] == "degraded" and status["circuitBreaker"]["openai"]["state"] == "open"

        # a provider that needs no credential is available when its service answers
        services.providers["local"] = dataclasses.replace(services.providers["openai"], name="local",
                                                          display_name="Local models", needs_credential=False)

        async def unreachable() -> bool:
            return False

        async def broken() -> bool:
            raise ConnectionError("refused")

        for probe, expected in ((None, "available"), (unreachable, "unavailable"), (broken, "unavailable")):
            discovery.probes.pop("local", None)
            if probe:
                discovery.probes["local"] = probe
            local = (await call(discovery.capabilities, headers))["byProvider"]["local"]
            assert local["status"] == expected, (probe, local)
            assert local["access"] == {"hasCredential": False, "credentialSource": "none", "isEnabled": True,
                                       "lastUsedAt": None}
        assert (await call(discovery.stats))["totalProviders"] == len(BUILTINS) + 1
    finally:
        await services.close()
