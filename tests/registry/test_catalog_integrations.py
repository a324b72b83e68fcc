"""Catalog integrations (reference §1.1, §6.2): OpenAPI integration resources of the Catalog
bootstrap become read-only global built-ins. Gateways configured with the Catalog fake
(tests/fakes/catalog.py, which also serves the specs on loopback) write them into the session's
registry; the session worker (`http`) serves them to every org and invokes them against a
Telegram Bot API fake with the global key's credential in the path."""

import asyncio
import logging
import uuid

import nats
import orjson
import pytest

from service.commands import Command, run_command
from service.container import Services
from service.registry.catalog import integration_resources
from tests.conftest import CALLER_KEY, REGISTRY_CREDENTIALS
from tests.fakes.catalog import STOCK_RESOURCES, FakeCatalog, telegram_spec
from tests.fakes.telegram import FakeTelegram
from tests.registry.conftest import as_org, must

KEY = "catalog-telegram"
TOKEN = REGISTRY_CREDENTIALS[KEY]
PROVIDER_CONFIGS = [r for r in STOCK_RESOURCES if r["key"].startswith("integrations/ai/")]


def telegram_resource(server_url: str, spec: str = "telegram.json", key: str = KEY, **metadata) -> dict:
    return {"id": f"int-{key}", "key": f"integrations/channels/{key}", "name": "Telegram Bot API",
            "type": "integration", "description": "Telegram Bot API for messaging channels",
            "metadata": {"integrationType": "openapi", "channelType": "telegram", "specUrl": "{catalog}/specs/" + spec,
                         "serverUrl": server_url, "authType": "path", **metadata}}


async def until(predicate, timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_integration_resources_and_their_keys():
    resources = [
        *PROVIDER_CONFIGS,
        {"key": "integrations/channels/telegram", "type": "integration",
         "metadata": {"integrationType": "openapi", "specUrl": "https://example.com/tg.json"}},
        {"key": "integrations/x/whatever", "type": "integration",
         "metadata": {"integrationType": "openapi", "integrationKey": "Slack", "specUrl": "https://example.com/s.json"}},
        {"key": "integrations/channels/telegram", "type": "integration",      # the key again: the first one wins
         "metadata": {"integrationType": "openapi", "specUrl": "https://example.com/other.json"}},
        {"key": "integrations/channels/Bad Key!", "type": "integration",
         "metadata": {"integrationType": "openapi", "specUrl": "https://example.com/b.json"}},
        {"key": "integrations/channels/nospec", "type": "integration", "metadata": {"integrationType": "openapi"}},
        {"key": "integrations/channels/mcp", "type": "integration", "metadata": {"integrationType": "mcp"}},
        {"key": "components/x", "type": "component", "metadata": {"integrationType": "openapi", "specUrl": "x"}},
    ]
    found, problems = integration_resources(resources)
    assert list(found) == ["telegram", "slack"]
    assert found["telegram"]["metadata"]["specUrl"] == "https://example.com/tg.json"
    assert len(problems) == 3 and all("integrations/channels/" in p for p in problems)


@pytest.fixture
def catalog():
    fake = FakeCatalog().start()
    yield fake
    fake.stop()


@pytest.fixture
def telegram():
    fake = FakeTelegram({TOKEN}).start()
    yield fake
    fake.stop()


@pytest.fixture
async def gateways(settings, nats_url, catalog, worker):
    """Start gateways (Services) with Catalog configured, on the session's NATS and registry."""
    started: list = []

    async def start(**overrides) -> Services:
        services = Services(settings.model_copy(update={
            "catalog_service_url": catalog.url, "catalog_refresh_s": 0.2, **overrides}))
        nc = await nats.connect(nats_url)
        started.append((services, nc))
        await services.load()           # the first Catalog load, as a worker's start-up
        await services.start(nc)        # the registry: then the sync runs in the background
        return services

    yield start
    for services, nc in started:
        await services.close()
        await nc.close()
    store = worker.services.registry_store      # the session registry is shared by every test
    for key in (KEY, "openai"):
        entry = await store.fetch(None, key)
        if entry is not None and entry.source == "catalog":
            await store.delete(entry)


async def test_a_catalog_integration_is_a_read_only_builtin_for_every_org(gateways, catalog, telegram, worker, http,
                                                                          admin_key):
    catalog.resources = [*PROVIDER_CONFIGS, telegram_resource(f"{telegram.url}/bot{{token}}")]
    services = await gateways()
    store = worker.services.registry_store
    await until(lambda: store.get(None, KEY) is not None)

    for org in (f"org-{uuid.uuid4().hex[:8]}", f"org-{uuid.uuid4().hex[:8]}"):
        listed = must(await http.get("/api/integrations/registry", headers=as_org(org)))["integrations"]
        view = next(i for i in listed if i["key"] == KEY)
        assert (view["builtin"], view["scope"], view["type"], view["version"]) == (True, "global", "openapi", 1)
        assert view["id"] == f"builtin-{KEY}" and view["name"] == "Telegram Bot API" and view["tags"] == ["catalog"]
        assert view["auth"] == {"type": "path", "placeholder": "token"}
        assert view["openapi"]["serverUrl"] == f"{telegram.url}/bot{{token}}"
        assert view["openapi"]["specUrl"] == f"{catalog.url}/specs/telegram.json"
        metadata = view["metadata"]       # the whole catalog metadata, and where it came from
        assert metadata["channelType"] == "telegram" and metadata["authType"] == "path"
        assert metadata["catalogKey"] == f"integrations/channels/{KEY}" and metadata["specHash"]
        assert {op["id"] for op in view["operations"]} == {"me.get", "send.message"}
        assert TOKEN not in orjson.dumps(view).decode()

        # invocable: the global key's credential replaces {token} in the server URL
        reply = must(await http.post("/api/integrations/invoke", headers=as_org(org), json={
            "operation": f"integrations.{KEY}.send.message", "body": {"chat_id": 42, "text": "hi"}}))
        assert reply["success"] is True and reply["integration"] == KEY and reply["statusCode"] == 200
        sent = {"method": "sendMessage", "params": {"chat_id": 42, "text": "hi"}}
        assert reply["data"] == {"ok": True, "result": sent}
    assert telegram.requests[-1]["path"] == f"/bot{TOKEN}/sendMessage"

    # read-only for everyone, admins included; refresh is an admin's
    for key, extra in ((CALLER_KEY, {}), (admin_key, {"scope": "global"})):
        response = await http.post("/api/integrations/register", headers=as_org("acme", key), json={
            "key": KEY, "type": "openapi", "openapi": {"specUrl": f"{catalog.url}/specs/telegram.json"}, **extra})
        assert response.status_code == 403 and response.json()["reason"] == "integration_read_only", response.text
    response = await http.delete(f"/api/integrations/registry/{KEY}", headers=as_org("acme", admin_key))
    assert response.status_code == 403 and response.json()["reason"] == "integration_read_only"
    response = await http.post(f"/api/integrations/registry/{KEY}/refresh", headers=as_org("acme"))
    assert response.status_code == 403 and response.json()["reason"] == "admin_required"

    # an admin's refresh re-runs the sync (on a worker that loaded the Catalog bootstrap)
    reply = await run_command(services.registry_service.refresh, Command(
        orjson.dumps({"key": KEY, "body": None}), {"x-api-key": admin_key, "x-org-id": "acme"}, "reg_refresh"))
    body = orjson.loads(reply.body)
    assert reply.status == 200 and body["integration"]["version"] == 2 and body["integration"]["builtin"] is True


async def test_catalog_down_or_unusable_registers_nothing(gateways, catalog, telegram, worker, caplog):
    caplog.set_level(logging.WARNING, logger="symbia.integrations")
    store = worker.services.registry_store
    dead = FakeCatalog().start()
    dead.stop()                         # nothing listens there any more
    services = await gateways(catalog_service_url=dead.url)
    assert services.provider_configs.source == "defaults"
    assert "could not load provider configs from catalog" in caplog.text

    # Catalog up, but the integration's key is a provider's, or its spec is missing: skipped, logged
    catalog.resources = [*PROVIDER_CONFIGS, telegram_resource(f"{telegram.url}/bot{{token}}", key="openai"),
                         telegram_resource(f"{telegram.url}/bot{{token}}", spec="missing.json")]
    await gateways()
    await until(lambda: "cannot load" in caplog.text and "skipped" in caplog.text)
    assert "the key belongs to a provider" in caplog.text and "Failed to fetch spec: 404" in caplog.text
    await asyncio.sleep(0.3)
    assert store.get(None, KEY) is None and store.get(None, "openai") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_changed_catalog_updates_the_entry_once_across_workers(gateways, catalog, telegram, worker, http):
    catalog.resources = [*PROVIDER_CONFIGS, telegram_resource(f"{telegram.url}/bot{{token}}")]
    first, second = await gateways(), await gateways()
    store = worker.services.registry_store
    await until(lambda: store.get(None, KEY) is not None)
    await asyncio.sleep(0.5)                          # both workers synced: the second wrote nothing
    assert store.get(None, KEY).version == 1

    # the next Catalog refresh lists a new spec: the entry follows, written once
    catalog.specs["telegram-v2.json"] = telegram_spec("sendPhoto")
    catalog.resources = [*PROVIDER_CONFIGS, telegram_resource(f"{telegram.url}/bot{{token}}", spec="telegram-v2.json")]
    await until(lambda: store.get(None, KEY).operation_count == 3)
    await asyncio.sleep(0.5)
    entry = store.get(None, KEY)
    assert entry.version == 2 and entry.openapi["specUrl"].endswith("/specs/telegram-v2.json")
    ops = must(await http.get(f"/api/integrations/registry/{KEY}/operations", headers=as_org("acme")))["operations"]
    assert {op["id"] for op in ops} == {"me.get", "send.message", "send.photo"}

    # Catalog no longer lists it: removed
    catalog.resources = list(PROVIDER_CONFIGS)
    await until(lambda: store.get(None, KEY) is None)
    assert first.registry.lookup("acme", KEY) is None and second.registry.lookup("acme", KEY) is None
