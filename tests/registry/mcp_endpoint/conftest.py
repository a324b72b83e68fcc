"""The MCP server endpoint (docs/MCP.md). The api under uvicorn on a loopback port (the SDK's client
speaks real HTTP), connected to the session worker; an org with an OpenAPI service (httpbinx), an
MCP server (the SDK test server) and a custom integration registered, shared by the tests of this
package (the peers are the registry tests' own)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from api.app import create_app
from api.settings import ApiSettings
from tests.conftest import CALLER_KEY, free_port
from tests.registry.conftest import as_org, must

ENDPOINT = "/api/integrations/mcp"
ALLOWED_ORIGIN = "https://console.example"
MAX_BODY = 200_000
LEGACY = "legacy"          # the SDK client's initialize handshake: negotiates 2025-11-25
MODERN = "auto"            # probes server/discover: negotiates 2026-07-28
ERAS = {LEGACY: "2025-11-25", MODERN: "2026-07-28"}


class Gateway:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.url = base_url + ENDPOINT


@pytest.fixture(scope="session")
async def gateway(worker, nats_url: str) -> AsyncIterator[Gateway]:
    settings = ApiSettings(_env_file=None, nats_url=nats_url, worker_silence_s=3, mcp_progress_s=0.2,
                           mcp_allowed_origins=ALLOWED_ORIGIN, max_body_bytes=MAX_BODY)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    assert server.started, "the api did not start"
    yield Gateway(f"http://127.0.0.1:{port}")
    server.should_exit = True
    await asyncio.wait_for(task, 15)


class Tenant:
    def __init__(self, org: str) -> None:
        self.org = org
        self.headers = as_org(org)


@pytest.fixture(scope="session")
async def tenant(http, httpbin, mcp_server) -> Tenant:
    """One org with httpbinx (OpenAPI 3.1), the SDK test MCP server and a custom integration whose
    operation id holds `.` and `_` (its tool name must still resolve back)."""
    tenant = Tenant(f"mcp-{uuid.uuid4().hex[:8]}")
    must(await http.post("/api/integrations/register", headers=tenant.headers, json={
        "key": "httpbin", "type": "openapi", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}))
    must(await http.post("/api/integrations/register", headers=tenant.headers, json={
        "key": "tools", "type": "mcp", "mcp": {"transport": "http", "serverUrl": mcp_server.url}}))
    must(await http.post("/api/integrations/register", headers=tenant.headers, json={
        "key": "files", "type": "custom", "openapi": {"serverUrl": httpbin.url},
        "operations": [{"id": "docs.read_file", "method": "POST", "path": "/anything", "summary": "Read a file",
                        "requestBody": {"required": True, "schema": {
                            "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]}))
    return tenant


@asynccontextmanager
async def connect(gateway: Gateway, mode: str, headers: dict[str, str], **client_options) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http_client:
        async with Client(streamable_http_client(gateway.url, http_client=http_client), mode=mode,
                          **client_options) as client:
            yield client


async def all_tools(client: Client) -> list:
    tools, cursor, pages = [], None, 0
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            return tools, pages


__all__ = ["ALLOWED_ORIGIN", "CALLER_KEY", "ENDPOINT", "ERAS", "LEGACY", "MODERN", "all_tools", "connect"]
