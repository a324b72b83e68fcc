"""Notifications: tools/list_changed when the registry changes (2025: on the session's stream;
2026: on subscriptions/listen), progress during a long call, cancellation reaching the worker."""

import asyncio
import contextlib
import uuid

import orjson
import pytest
from mcp_types import ToolListChangedNotification

from service.mcp.endpoint import _Running
from tests.conftest import CALLER_KEY
from tests.registry.conftest import as_org, must
from tests.registry.mcp_endpoint.conftest import LEGACY, MODERN, connect


def custom(key: str, url: str) -> dict:
    return {"key": key, "type": "custom", "openapi": {"serverUrl": url},
            "operations": [{"id": "ping", "method": "GET", "path": "/get"}]}


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_list_changed_reaches_2025_sessions_of_that_org_only(gateway, http, httpbin):
    org, other = f"n-{uuid.uuid4().hex[:8]}", f"n-{uuid.uuid4().hex[:8]}"
    received = []

    async def on_message(message) -> None:
        if isinstance(message, ToolListChangedNotification):
            received.append(message)

    async with connect(gateway, LEGACY, as_org(org), message_handler=on_message) as client:
        assert client.server_capabilities.tools.list_changed is True
        for attempt in range(5):    # until the client's standalone stream is open (it opens it after the handshake)
            must(await http.post("/api/integrations/register", headers=as_org(org),
                                 json=custom(f"fresh{attempt}", httpbin.url)))
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: received, 1)
                break
        assert received
        await asyncio.sleep(0.2)
        received.clear()
        must(await http.post("/api/integrations/register", headers=as_org(other), json=custom("elsewhere",
                                                                                             httpbin.url)))
        await asyncio.sleep(0.5)
        assert not received             # another org's change is not this session's business
        must(await http.post("/api/integrations/register", headers=as_org(org), json=custom("more", httpbin.url)))
        await wait_for(lambda: received)
        assert "more_ping" in [tool.name for tool in (await client.list_tools()).tools]


async def test_list_changed_reaches_2026_listeners(gateway, http, httpbin):
    org = f"n-{uuid.uuid4().hex[:8]}"
    async with connect(gateway, MODERN, as_org(org)) as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(tools_list_changed=True) as subscription:
            must(await http.post("/api/integrations/register", headers=as_org(org), json=custom("later",
                                                                                               httpbin.url)))
            async with asyncio.timeout(5):
                async for event in subscription:
                    assert type(event).__name__ == "ToolsListChanged"
                    break


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_progress_while_a_call_runs(gateway, tenant, mode):
    updates = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, message))

    async with connect(gateway, mode, tenant.headers) as client:
        result = await client.call_tool("httpbin_delay_response_delay_delay_get", {"delay": 1},
                                        progress_callback=on_progress)
    assert result.is_error is False, result
    assert len(updates) >= 2 and [p for p, _ in updates] == sorted(p for p, _ in updates)
    assert "running for" in updates[0][1]


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_cancelling_a_call_stops_it_in_the_worker(gateway, tenant, mode, worker):
    outcomes = []

    async def observe(command, reply) -> None:
        if command.record is not None and command.record.kind == "mcp":
            outcomes.append((command.record.operation, reply.status))

    worker.services.observers.append(observe)
    try:
        async with connect(gateway, mode, tenant.headers) as client:
            call = asyncio.create_task(client.call_tool("httpbin_delay_response_delay_delay_get", {"delay": 4}))
            await asyncio.sleep(0.7)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await wait_for(lambda: outcomes, 3)   # well before the 4 s the upstream would take
    finally:
        worker.services.observers.remove(observe)
    assert outcomes == [("httpbin.delay.response.delay.delay.get", 499)]
    assert not worker.services.mcp_endpoint._running


async def test_a_cancel_of_someone_else_is_ignored(worker, nc, tenant):
    """The cancel subject is fan-out; only the principal that started a call can stop it."""
    endpoint = worker.services.mcp_endpoint
    task = asyncio.create_task(asyncio.sleep(5))
    endpoint._running["mcp_someone"] = _Running("key:other", "acme", task)
    try:
        await nc.publish("integrations.v1.mcp.cancel", orjson.dumps({"requestId": "mcp_someone"}),
                         headers={"x-api-key": CALLER_KEY, "x-org-id": tenant.org})
        await asyncio.sleep(0.3)
        assert not task.cancelled()
    finally:
        endpoint._running.pop("mcp_someone", None)
        task.cancel()
