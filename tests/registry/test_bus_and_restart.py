"""The registry on the bus with a plain nats-py client: register and invoke subjects, change
events, several workers sharing one registry, a restart that loses nothing; provider built-ins
invoked through the execute pipeline; internal Symbia services as built-ins."""

import asyncio
import uuid

import nats
import orjson
import pytest

from contracts import subjects
from handlers.app import build_app
from service.commands import Command, run_command
from service.container import Services
from tests.conftest import CALLER_KEY
from tests.registry.conftest import as_org, must


def bus_headers(org: str, key: str = CALLER_KEY) -> dict[str, str]:
    return {"x-api-key": key, "x-org-id": org}


async def request(nc, subject: str, body: dict, org: str, key: str = CALLER_KEY) -> tuple[int, dict]:
    msg = await nc.request(subject, orjson.dumps(body), timeout=20, headers=bus_headers(org, key))
    return int(msg.headers["x-status"]), orjson.loads(msg.data)


async def until(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_register_and_invoke_over_the_bus_with_events(worker, nc, httpbin, org):
    events: list = []

    async def collect(msg):
        events.append(msg)

    sub = await nc.subscribe(f"{subjects.EVENTS_REGISTRY}.{org}.*", cb=collect)
    status, reply = await request(nc, subjects.REGISTRY_REGISTER, {
        "key": "busbin", "type": "openapi", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}, org)
    assert status == 200 and reply["integration"]["version"] == 1
    status, reply = await request(nc, subjects.INVOKE, {"operation": "busbin.anything.anything.put",
                                                        "params": {"via": "nats"}, "body": [1, 2]}, org)
    assert status == 200 and reply["data"]["args"] == {"via": "nats"} and reply["data"]["method"] == "PUT"
    status, reply = await request(nc, subjects.REGISTRY_GET, {"key": "busbin"}, org)
    assert status == 200 and reply["integration"]["key"] == "busbin"
    status, reply = await request(nc, subjects.REGISTRY_REFRESH, {"key": "busbin", "body": None}, org)
    assert status == 200 and reply["integration"]["version"] == 2
    status, reply = await request(nc, subjects.REGISTRY_DELETE, {"key": "busbin"}, org)
    assert status == 200 and reply == {"success": True, "key": "busbin", "version": 2}
    await until(lambda: len(events) >= 3)
    await sub.unsubscribe()
    actions = [orjson.loads(m.data)["action"] for m in events]
    assert actions == ["registered", "refreshed", "deleted"]
    assert events[0].subject == f"{subjects.EVENTS_REGISTRY}.{org}.busbin"
    first = orjson.loads(events[0].data)
    assert first["org"] == org and first["scope"] == "org" and first["principal"] == "config-key-1"


async def test_global_events_use_the_global_token(worker, nc, httpbin, admin_key):
    key = f"glob-{uuid.uuid4().hex[:6]}"
    sub = await nc.subscribe(f"{subjects.EVENTS_REGISTRY}.{subjects.REGISTRY_GLOBAL_ORG}.{key}")
    status, _ = await request(nc, subjects.REGISTRY_REGISTER, {
        "key": key, "type": "custom", "scope": "global", "operations": [{"id": "x"}]}, "any", admin_key)
    assert status == 200
    msg = await sub.next_msg(timeout=5)
    assert orjson.loads(msg.data)["scope"] == "global"
    await request(nc, subjects.REGISTRY_DELETE, {"key": key}, "any", admin_key)


async def test_two_workers_share_the_registry_and_a_restart_loses_nothing(worker, settings, nc, httpbin, org):
    second = build_app(settings)
    async with second:
        status, _ = await request(nc, subjects.REGISTRY_REGISTER, {
            "key": "shared", "type": "openapi", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}, org)
        assert status == 200
        for app in (worker, second):  # whichever worker handled it, both know it
            await until(lambda app=app: app.services.registry_store.get(org, "shared") is not None)

    third = build_app(settings)      # a worker started afterwards reads the state from JetStream
    async with third:
        services: Services = third.services
        assert services.registry_store.get(org, "shared") is not None
        command = Command(orjson.dumps({"operation": "shared.get.get.get", "params": {"n": "3"}}),
                          bus_headers(org), "inv_restart")
        reply = await run_command(services.invoke, command)
        assert reply.status == 200 and orjson.loads(reply.body)["data"]["args"] == {"n": "3"}


async def test_provider_builtins_run_the_execute_pipeline(http, org, llmock, worker):
    records = []

    async def observe(command, reply):
        records.append(command.record)

    worker.services.observers.append(observe)
    try:
        listed = must(await http.get("/api/integrations/registry/openai/operations", headers=as_org(org)))
        assert "chat.completions.create" in {op["id"] for op in listed["operations"]}
        reply = must(await http.post("/api/integrations/invoke", headers=as_org(org), json={
            "operation": "integrations.openai.chat.completions.create",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}))
        assert reply["success"] is True and reply["type"] == "llm" and reply["data"]["provider"] == "openai"
        assert reply["integration"] == "openai" and reply["data"]["usage"]["totalTokens"] > 0
        record = next(r for r in records if r.kind == "invoke")
        assert (record.integration, record.operation, record.model_requested) == (
            "openai", "integrations.openai.chat.completions.create", "gpt-4o-mini")
        assert record.credential_source == "env" and record.total_tokens > 0

        # validation and upstream classification are the execute pipeline's, not a side door
        response = await http.post("/api/integrations/invoke", headers=as_org(org), json={
            "operation": "openai.embeddings", "body": {"model": "m", "input": "x", "temperature": 1}})
        assert response.status_code == 400 and response.json()["reason"] == "unsupported_parameter"
        llmock.scenario({"type": "fail", "status": 429})
        response = await http.post("/api/integrations/invoke", headers=as_org(org), json={
            "operation": "openai.chat.completions", "body": {"model": "m", "prompt": "x"}})
        assert response.status_code == 429 and response.json()["category"] == "rate_limit"
        assert response.json()["provider"] == "openai"
    finally:
        worker.services.observers.remove(observe)


@pytest.fixture
async def internal_services(settings, documents, nats_url):
    spec = {"openapi": "3.0.3", "info": {"title": "Identity", "version": "1"},
            "servers": [{"url": "http://localhost:5001"}],
            "paths": {"/api/things/{id}": {"get": {"operationId": "getThing", "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok"}}}},
                "/api/auth/forgot-password": {"post": {"operationId": "forgotPassword",
                                                       "responses": {"200": {"description": "ok"}}}}}}
    documents.serve("/docs/openapi.json", orjson.dumps(spec), "application/json")
    services = Services(settings.model_copy(update={"internal_services": {"identity": documents.url}}))
    nc = await nats.connect(nats_url)
    await services.start(nc)
    yield services
    await services.close()
    await nc.close()


async def test_internal_services_are_read_only_builtins(internal_services, documents, admin_key):
    store = internal_services.registry_store
    await until(lambda: store.get(None, "identity") is not None, 15)
    entry = store.get(None, "identity")
    assert entry.builtin and entry.source == "internal" and entry.server_url == documents.url
    ops = (await internal_services.registry.operations(entry)).operations
    assert [op["id"] for op in ops] == ["identity.thing.get"]        # password operations excluded

    async def call(handler, body, key=CALLER_KEY, extra=None):
        headers = {**bus_headers("acme-int", key), **(extra or {})}
        reply = await run_command(handler, Command(orjson.dumps(body), headers, "inv_internal"))
        return reply.status, orjson.loads(reply.body)

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, body = await call(internal_services.invoke, {"operation": "identity.identity.thing.get",
                                                         "params": {"id": "42", "q": "1"}},
                              extra={"traceparent": traceparent})
    assert status == 200 and body["data"]["id"] == "42", body
    seen = {k.lower(): v for k, v in documents.requests[-1]["headers"].items()}
    assert seen["x-org-id"] == "acme-int" and seen["x-request-id"] == "inv_internal"
    assert seen["traceparent"] == traceparent and seen["x-symbia-caller"] == "integrations"

    status, body = await call(internal_services.registry_service.register, {
        "key": "identity", "type": "openapi", "openapi": {"specUrl": "http://example.com/x.json"}})
    assert status == 403 and body["reason"] == "integration_read_only"
    status, body = await call(internal_services.registry_service.refresh, {"key": "identity", "body": None})
    assert status == 403 and body["reason"] == "admin_required"
    status, body = await call(internal_services.registry_service.refresh, {"key": "identity", "body": None},
                              key=admin_key)
    assert status == 200 and body["integration"]["version"] >= 2 and body["integration"]["builtin"] is True
