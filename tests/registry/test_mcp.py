"""MCP integrations: a server built with the official SDK, registered over streamable HTTP
(and over stdio when allow-listed), its tools, resources and prompts invoked through the
gateway's pooled SDK client."""

import sys

import pytest

from tests.conftest import CREDS_ORG, free_port
from tests.registry.conftest import as_org, must, start_mcp_server, stop


async def register_mcp(http, org, url, key="tools", **extra) -> dict:
    return must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": key, "type": "mcp", "mcp": {"transport": "http", "serverUrl": url, **extra.pop("mcp", {})}, **extra}))


async def invoke(http, org, operation, **body):
    response = await http.post("/api/integrations/invoke", headers=as_org(org),
                               json={"operation": operation, **body})
    return response.status_code, response.json()


async def test_register_discovers_tools_resources_and_prompts(http, org, mcp_server):
    reply = await register_mcp(http, org, mcp_server.url)
    ids = {op["id"] for op in reply["integration"]["operations"]}
    assert {"tool.add", "tool.read_file", "tool.fail", "tool.whoami", "resource.app-config", "resource.greeting",
            "prompt.review"} <= ids
    assert reply["capabilities"]["tools"] is True and reply["capabilities"]["protocolVersion"]
    add = next(op for op in reply["integration"]["operations"] if op["id"] == "tool.add")
    assert add["mcpTool"]["name"] == "add" and {p["name"] for p in add["parameters"]} == {"a", "b"}
    tree = reply["integration"]["namespace"]
    assert tree["read"]["file"]["_operation"] == "tool.read_file"


async def test_invoke_tools_resources_and_prompts(http, org, mcp_server, worker):
    await register_mcp(http, org, mcp_server.url)
    status, reply = await invoke(http, org, "integrations.tools.tool.add", body={"a": 2, "b": 3})
    assert status == 200 and reply["success"] is True and reply["type"] == "mcp-tool", reply
    assert reply["data"]["structuredContent"] == {"result": 5} and reply["data"]["content"][0]["text"] == "5"
    # a tool name with an underscore, by namespace path and by its upstream name
    for operation in ("tools.read.file", "tools.read_file", "tools.tool.read_file"):
        status, reply = await invoke(http, org, operation, body={"path": "/etc/hosts"})
        assert status == 200 and reply["data"]["content"][0]["text"] == "contents of /etc/hosts", operation
    status, reply = await invoke(http, org, "tools.resource.app-config")
    assert status == 200 and reply["type"] == "mcp-resource"
    assert reply["data"]["contents"][0]["text"] == '{"feature": true}'
    status, reply = await invoke(http, org, "tools.resource.greeting", params={"name": "Ada Lovelace"})
    assert status == 200 and reply["data"]["contents"][0]["text"] == "Hello, Ada Lovelace!"
    status, reply = await invoke(http, org, "tools.prompt.review", body={"code": "x = 1"})
    assert status == 200 and reply["type"] == "mcp-prompt"
    assert "x = 1" in reply["data"]["messages"][0]["content"]["text"]
    # one pooled connection served all of these
    pooled = [k for k in worker.services.mcp._connections if k[0] == f"o.{org}.tools"]
    assert len(pooled) == 1


async def test_tool_errors_are_reported_not_raised(http, org, mcp_server):
    await register_mcp(http, org, mcp_server.url)
    status, reply = await invoke(http, org, "tools.tool.fail", body={"message": "boom"})
    assert status == 200 and reply["success"] is False and reply["data"]["isError"] is True
    assert reply["error"]
    status, reply = await invoke(http, org, "tools.tool.add", body=[1, 2])
    assert status == 400


async def test_the_credential_goes_to_the_mcp_server(http, mcp_server):
    org = CREDS_ORG
    await register_mcp(http, org, mcp_server.url, key="mcp-auth", auth={"type": "bearer"})
    status, reply = await invoke(http, org, "mcp-auth.tool.whoami")
    assert status == 200 and reply["data"]["content"][0]["text"] == "Bearer mcp-token-abc"


async def test_flat_mcp_register_of_the_original(http, org, mcp_server):
    reply = must(await http.post("/api/integrations/mcp/register", headers=as_org(org),
                                 json={"key": "flat", "transport": "streamable-http", "serverUrl": mcp_server.url}))
    assert reply["integration"]["type"] == "mcp" and reply["integration"]["name"] == "flat"
    assert reply["integration"]["description"] == "MCP server: flat" and reply["operationCount"] >= 7
    preview = must(await http.post("/api/integrations/parse/mcp", headers=as_org(org),
                                   json={"transport": "http", "serverUrl": mcp_server.url}))
    assert {op["id"] for op in preview["operations"]} >= {"tool.add", "prompt.review"}


async def test_stdio_needs_an_allow_listed_command(http, org):
    for body in ({"command": "bash", "args": ["-c", "echo pwned"]},
                 {"command": sys.executable, "args": ["-c", "import os; os.system('id')"]}):
        response = await http.post("/api/integrations/register", headers=as_org(org), json={
            "key": "stdio-bad", "type": "mcp", "mcp": {"transport": "stdio", **body}})
        assert response.status_code == 403 and response.json()["reason"] == "stdio_not_allowed", response.text
        response = await http.post("/api/integrations/parse/mcp", headers=as_org(org),
                                   json={"transport": "stdio", **body})
        assert response.status_code == 403
    reply = must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "stdio-ok", "type": "mcp",
        "mcp": {"transport": "stdio", "command": sys.executable, "args": ["-m", "tests.fakes.mcp_server", "stdio"]}}))
    assert reply["operationCount"] >= 7
    status, body = await invoke(http, org, "stdio-ok.tool.add", body={"a": 20, "b": 22})
    assert status == 200 and body["data"]["structuredContent"] == {"result": 42}


@pytest.mark.parametrize("url", ["http://169.254.169.254/mcp", "http://127.0.0.9:1/mcp", "http://localhost:{port}/mcp"])
async def test_mcp_urls_pass_the_outbound_guard(http, org, mcp_server, url):
    response = await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "mcp-ssrf", "type": "mcp", "mcp": {"transport": "http", "serverUrl": url.format(port=mcp_server.port)}})
    assert response.status_code == 403 and response.json()["reason"] == "outbound_denied", response.text


async def test_a_lost_session_is_re_established(http, org):
    port = free_port()
    proc = start_mcp_server(port)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        await register_mcp(http, org, url, key="restarting", mcp={"mode": "legacy"})
        status, reply = await invoke(http, org, "restarting.tool.add", body={"a": 1, "b": 1})
        assert status == 200 and reply["data"]["structuredContent"] == {"result": 2}
        stop(proc)
        proc = start_mcp_server(port)   # a new process: the gateway's session id is unknown to it (404)
        status, reply = await invoke(http, org, "restarting.tool.add", body={"a": 2, "b": 2})
        assert status == 200 and reply["data"]["structuredContent"] == {"result": 4}, reply
        stop(proc)
        status, reply = await invoke(http, org, "restarting.tool.add", body={"a": 2, "b": 2})
        assert status == 502 and reply["category"] == "network" and reply["provider"] == "restarting", reply
    finally:
        stop(proc)
