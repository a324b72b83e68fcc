"""`GET /mcp/info` (per caller, toolCount = tools/list) and `POST /mcp/register` in both body forms."""

import uuid

from tests.registry.conftest import as_org, must
from tests.registry.mcp_endpoint.conftest import LEGACY, all_tools, connect


async def test_info_counts_what_tools_list_returns(gateway, http, tenant):
    info = must(await http.get("/api/api/integrations/mcp/info", headers=tenant.headers))
    async with connect(gateway, LEGACY, tenant.headers) as client:
        tools, _ = await all_tools(client)
    assert info["toolCount"] == len(tools)
    versions = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
    assert info["server"] == {"name": "symbia-integrations", "version": info["server"]["version"],
                              "protocol": "2026-07-28", "protocolVersions": versions}
    assert info["capabilities"] == {"tools": True, "resources": False, "prompts": False}
    first = info["tools"][0]
    assert first["name"] == tools[0].name and {"integration", "operation", "tags"} <= set(first)
    unauthenticated = await http.get("/api/integrations/mcp/info", headers={"X-API-Key": "nope"})
    assert unauthenticated.status_code == 401


async def test_register_takes_the_flat_and_the_nested_body(http, mcp_server):
    org = f"r-{uuid.uuid4().hex[:8]}"
    nested = must(await http.post("/api/integrations/mcp/register", headers=as_org(org), json={
        "key": "nested", "name": "Nested", "mcp": {"transport": "http", "serverUrl": mcp_server.url}}))
    assert nested["integration"]["name"] == "Nested" and nested["operationCount"] >= 7
    assert nested["capabilities"]["tools"] is True
    implicit = must(await http.post("/api/integrations/mcp/register", headers=as_org(org), json={
        "key": "implicit", "name": "Implicit", "mcp": {"serverUrl": mcp_server.url}}))   # transport: http
    assert implicit["integration"]["mcp"]["transport"] == "http"
    flat = must(await http.post("/api/integrations/mcp/register", headers=as_org(org), json={
        "key": "flat", "transport": "http", "serverUrl": mcp_server.url}))
    assert flat["integration"]["description"] == "MCP server: flat"
    clash = await http.post("/api/integrations/mcp/register", headers=as_org(org), json={
        "key": "clash", "serverUrl": "http://127.0.0.1:1/mcp", "mcp": {"serverUrl": mcp_server.url}})
    assert clash.status_code == 400 and "serverUrl" in clash.json()["error"]
    missing = await http.post("/api/integrations/mcp/register", headers=as_org(org), json={"key": "none"})
    assert missing.status_code == 400 and "transport" in missing.json()["error"]
