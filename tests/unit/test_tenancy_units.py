"""The TTL cache, Identity answer parsing, cookies, the admin check and the org rule."""

import asyncio

import pytest

from service.auth.access import Caller, require_admin
from service.auth.identity import parse_cookies, principal_from_api_key, principal_from_introspection
from service.auth.principal import Principal, resolve_org
from service.cache import TTLCache
from service.catalog import bootstrap_resources, provider_configs_from
from service.errors import GatewayError
from service.providers.models import describe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_cache_expiry_per_entry_and_lru_bound():
    clock = Clock()
    cache: TTLCache[str] = TTLCache(max_entries=2, clock=clock)
    cache.put("a", "1", ttl_s=10)
    cache.put("b", "2", ttl_s=1)
    assert cache.lookup("a") == (True, "1")            # a is now the most recently used
    clock.now = 1.5
    assert cache.lookup("b") == (False, None)          # its own TTL
    cache.put("c", "3", ttl_s=10)
    cache.put("d", "4", ttl_s=10)
    assert len(cache) == 2 and cache.lookup("a") == (False, None)   # least recently used went
    cache.put("d", "x", ttl_s=0)                       # ttl <= 0: not cached (and dropped)
    assert cache.lookup("d") == (False, None)


async def test_ttl_cache_single_flight_and_failures_are_not_cached():
    cache: TTLCache[int] = TTLCache(max_entries=10)
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls, 60.0

    results = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(10)))
    assert results == [1] * 10 and calls == 1

    async def failing():
        raise GatewayError("down", category="network")  # type: ignore[arg-type]

    for _ in range(2):
        with pytest.raises(GatewayError):
            await cache.get_or_load("f", failing)
    assert cache.lookup("f") == (False, None)


def test_cookie_parsing_is_tolerant():
    assert parse_cookies('a=1; token="abc.def"; junk; =x; b = 2') == {"a": "1", "token": "abc.def", "b": "2"}
    assert parse_cookies("") == {}


def test_identity_answers_become_principals():
    user = principal_from_introspection({
        "active": True, "type": "user", "sub": "u1", "isSuperAdmin": False,
        "organizations": [{"id": "o1", "name": "O"}, {"id": "o2"}], "entitlements": ["cap:integrations.admin"],
    }, "tok")
    assert (user.id, user.organizations, user.default_org, user.is_admin, user.token) == (
        "u1", ("o1", "o2"), "o1", True, "tok")
    agent = principal_from_introspection({"active": True, "type": "agent", "sub": "uuid", "agentId": "assistant:x",
                                          "orgId": None, "capabilities": ["x"]}, "tok")
    assert (agent.id, agent.organizations, agent.default_org, agent.is_admin) == ("assistant:x", (), None, False)
    assert principal_from_introspection({"active": False, "sub": "u1"}, "tok") is None
    key = principal_from_api_key({"valid": True, "keyId": "k9", "orgId": "o1", "scopes": ["s"], "creator": None})
    assert (key.id, key.type, key.organizations, key.token) == ("api:k9", "api_key", ("o1",), None)
    assert principal_from_api_key({"valid": False}) is None


def test_require_admin_is_the_one_operator_check():
    member = Principal(id="u", type="user", organizations=("o",))
    with pytest.raises(GatewayError) as err:
        require_admin(Caller(member, "o"))
    assert err.value.status == 403 and err.value.reason == "admin_required"
    require_admin(Caller(Principal(id="a", type="user", organizations=(), super_admin=True), "o"))
    require_admin(Caller(Principal(id="a", type="agent", organizations=(),
                                 entitlements=frozenset({"integrations:admin"})), "o"))


def test_org_rule_without_a_fallback_org():
    nobody = Principal(id="u", type="user", organizations=())
    with pytest.raises(GatewayError) as err:
        resolve_org(nobody, None, None)
    assert err.value.status == 400 and err.value.reason == "org_required"
    with pytest.raises(GatewayError) as err:
        resolve_org(nobody, "acme", None)
    assert err.value.status == 403


def test_catalog_bootstrap_parsing():
    resources = [{"key": "integrations/ai/openai/config", "metadata": {"provider": "openai", "baseUrl": "x"}},
                 {"key": "integrations/ai/openai/models/gpt-4o", "metadata": {"provider": "openai"}},
                 {"key": "integrations/ai/bad/config", "metadata": "nope"}, "junk"]
    assert bootstrap_resources({"resources": resources}) == bootstrap_resources(resources) == resources[:3]
    assert provider_configs_from(resources[:3]) == {"openai": {"provider": "openai", "baseUrl": "x"}}
    assert bootstrap_resources({"unexpected": 1}) == []


def test_listed_model_ids_are_described_from_the_table_or_their_name():
    dated = describe("openai", "gpt-4o-mini-2024-07-18")
    assert dated.id == "gpt-4o-mini-2024-07-18" and "vision" in dated.capabilities and dated.input_price
    assert describe("openai", "text-embedding-9").capabilities == ("embedding",)
    assert "reasoning" in describe("openai", "gpt-5-nano-preview").capabilities
