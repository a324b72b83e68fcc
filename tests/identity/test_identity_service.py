"""Identity and Catalog as dependencies, without the bus: Identity round trips per execute (cold
and warm cache), cache TTLs (a revoked token stops working within the TTL), Identity down or
hung (a quick 503), Catalog down, hung or failing (defaults, or the last good configs)."""

import asyncio
import time

import orjson
import pytest

from service.commands import Command, run_command
from service.container import Services
from tests.conftest import free_port
from tests.fakes.catalog import FakeCatalog
from tests.fakes.identity import FakeIdentity
from tests.identity.conftest import identity_mode_settings

CHAT = {"provider": "openai", "operation": "chat.completions", "params": {"model": "gpt-4o-mini", "prompt": "hi"}}


async def run(handler, headers: dict, body: dict | None = None) -> tuple[int, dict]:
    reply = await run_command(handler, Command(orjson.dumps(CHAT if body is None else body), headers, "req_test"))
    return reply.status, orjson.loads(reply.body)


@pytest.fixture
async def services(identity_fake, directory, keyed_openai):
    built = Services(identity_mode_settings(identity_fake, keyed_openai))
    yield built
    await built.close()


def identity_calls(fake: FakeIdentity, since: int) -> list[str]:
    return [r["path"] for r in fake.requests[since:]]


async def test_identity_round_trips_per_execute_cold_and_warm(services, identity_fake, directory):
    """Measured numbers quoted in docs/IDENTITY.md."""
    cases = {
        "bearer": {"authorization": f"Bearer {directory.alice}", "x-org-id": "acme"},
        "api key": {"x-api-key": directory.acme_api_key},
    }
    for headers in cases.values():
        start = len(identity_fake.requests)
        assert (await run(services.execute, headers))[0] == 200
        cold = identity_calls(identity_fake, start)
        assert len(cold) == 2, cold                 # introspect (or verify-api-key) + credential lookup
        start = len(identity_fake.requests)
        for _ in range(5):
            assert (await run(services.execute, headers))[0] == 200
        assert identity_calls(identity_fake, start) == []        # warm: no Identity round trip at all
    named = {**CHAT, "credentialId": directory.alice_credential}
    start = len(identity_fake.requests)
    assert (await run(services.execute, cases["bearer"], named))[0] == 200
    assert identity_calls(identity_fake, start) == [f"/api/internal/credentials/by-id/{directory.alice_credential}"]


async def test_a_burst_of_new_callers_costs_one_introspection(services, identity_fake, directory):
    token = identity_fake.add_user("erin", ["acme"])
    start = len(identity_fake.requests)
    results = await asyncio.gather(*(run(services.execute, {"authorization": f"Bearer {token}"}) for _ in range(20)))
    assert all(status == 200 for status, _ in results)
    assert len(identity_calls(identity_fake, start)) == 2


async def test_revoked_token_stops_working_within_the_ttl(identity_fake, directory, keyed_openai):
    services = Services(identity_mode_settings(identity_fake, keyed_openai, auth_cache_ttl_s=0.3,
                                               auth_negative_cache_ttl_s=0.3))
    try:
        token = identity_fake.issue("alice")
        headers = {"authorization": f"Bearer {token}"}
        assert (await run(services.execute, headers))[0] == 200
        identity_fake.revoke(token)
        assert (await run(services.execute, headers))[0] == 200     # still cached: within the TTL
        await asyncio.sleep(0.35)
        status, body = await run(services.execute, headers)
        assert status == 401 and body["reason"] == "unauthenticated"
        # negative answers are cached too, and expire
        start = len(identity_fake.requests)
        assert (await run(services.execute, headers))[0] == 401
        assert identity_calls(identity_fake, start) == []
    finally:
        await services.close()


async def test_positive_answers_never_outlive_the_tokens_own_expiry(services, identity_fake):
    token = identity_fake.issue("alice", ttl_s=1.5)          # the cache TTL is 30 s
    headers = {"authorization": f"Bearer {token}"}
    assert (await run(services.execute, headers))[0] == 200
    await asyncio.sleep(1.6)
    assert (await run(services.execute, headers))[0] == 401


async def test_credential_cache_expires(identity_fake, directory, keyed_openai):
    services = Services(identity_mode_settings(identity_fake, keyed_openai, credential_cache_ttl_s=0.3,
                                               credential_negative_cache_ttl_s=0.3))
    try:
        token = identity_fake.add_user("frank", ["umbrella"])
        headers = {"authorization": f"Bearer {token}"}
        status, body = await run(services.execute, headers)
        assert status == 400 and body["reason"] == "provider_credential_missing"
        identity_fake.add_credential("openai", owner="frank", api_key="sk-alice")
        assert (await run(services.execute, headers))[0] == 400        # the miss is cached ...
        await asyncio.sleep(0.35)
        assert (await run(services.execute, headers))[0] == 200        # ... for its TTL only
    finally:
        await services.close()


async def test_identity_down_is_a_quick_503(directory, keyed_openai, identity_fake):
    dead = FakeIdentity()
    dead.url = f"http://127.0.0.1:{free_port()}"
    services = Services(identity_mode_settings(dead, keyed_openai))
    try:
        started = time.monotonic()
        status, body = await run(services.execute, {"authorization": f"Bearer {directory.alice}"})
        assert status == 503 and body["reason"] == "identity_unavailable" and body["retryable"] is True
        assert time.monotonic() - started < 1.0
    finally:
        await services.close()


@pytest.mark.parametrize("mode", ["hung", "failing"])
async def test_identity_hung_or_failing_is_a_503_within_the_timeout(directory, keyed_openai, mode):
    sick = FakeIdentity().start()
    sick.delay_s, sick.fail_status = (5.0, None) if mode == "hung" else (0.0, 500)
    services = Services(identity_mode_settings(sick, keyed_openai, identity_timeout_s=0.5))
    try:
        started = time.monotonic()
        for headers in ({"authorization": "Bearer tok_x"}, {"x-api-key": "sk_sym_x"}):
            status, body = await run(services.execute, headers)
            assert status == 503 and body["reason"] == "identity_unavailable", body
        assert time.monotonic() - started < 2.5
    finally:
        await services.close()
        sick.stop()


async def test_identity_failing_on_credential_lookup_is_a_503_not_a_missing_key(directory, keyed_openai):
    sick = FakeIdentity().start()
    token = sick.add_user("gina", ["acme"])
    services = Services(identity_mode_settings(sick, keyed_openai))
    try:
        assert (await run(services.execute, {"authorization": f"Bearer {token}"}))[0] == 400   # no key: 400
        services.tenancy.credential_cache.clear()
        sick.fail_status = 502
        status, body = await run(services.execute, {"authorization": f"Bearer {token}"})  # auth cached
        assert status == 503 and body["reason"] == "identity_unavailable"
    finally:
        await services.close()
        sick.stop()


def providers_reply(services: Services) -> dict:
    return {c["provider"]: c for c in services.provider_configs.all()}


async def test_catalog_configs_replace_the_defaults_and_refresh(identity_fake, keyed_openai):
    catalog = FakeCatalog().start()
    services = Services(identity_mode_settings(identity_fake, keyed_openai, catalog_service_url=catalog.url,
                                               catalog_refresh_s=0.2))
    try:
        await services.load()
        configs = providers_reply(services)
        assert services.provider_configs.source == "catalog"
        assert configs["openai"]["baseUrl"] == "https://api.openai.com/v1"          # as Catalog describes it
        assert configs["openai"]["rateLimits"] == {"requestsPerMinute": 60, "tokensPerMinute": 40000}
        assert configs["openai"]["supportedOperations"] == list(services.providers["openai"].operations)
        assert configs["huggingface"]["defaultModel"] == "meta-llama/Llama-3.3-70B-Instruct"
        assert configs["anthropic"]["authHeader"] == "x-api-key"               # Catalog's description
        assert configs["anthropic"]["supportedOperations"] == list(services.providers["anthropic"].operations)
        assert len(services.provider_configs.resources) == len(catalog.resources)
        hits = catalog.count("/api/bootstrap")
        catalog.fail_status = 500                         # a failed refresh keeps the last good configs
        await asyncio.sleep(0.5)
        assert catalog.count("/api/bootstrap") > hits
        assert providers_reply(services)["openai"]["baseUrl"] == "https://api.openai.com/v1"
    finally:
        await services.close()
        catalog.stop()


@pytest.mark.parametrize("mode", ["down", "hung", "empty"])
async def test_catalog_unusable_means_builtin_defaults(identity_fake, keyed_openai, mode):
    catalog = FakeCatalog().start()
    url = catalog.url
    if mode == "down":
        catalog.stop()
    elif mode == "hung":
        catalog.delay_s = 5
    else:
        catalog.resources = [{"key": "something/else", "metadata": {}}]
    services = Services(identity_mode_settings(identity_fake, keyed_openai, catalog_service_url=url,
                                               catalog_timeout_s=0.5))
    try:
        started = time.monotonic()
        await services.load()
        assert time.monotonic() - started < 1.5
        assert services.provider_configs.source == "defaults"
        openai = providers_reply(services)["openai"]
        assert openai["baseUrl"] == keyed_openai.base_url and openai["defaultModel"] == "gpt-4o-mini"
    finally:
        await services.close()
        if mode != "down":
            catalog.stop()
