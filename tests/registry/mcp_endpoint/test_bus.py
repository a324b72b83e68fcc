"""The MCP subjects with a plain nats-py client (no FastStream, no SDK): what the api sends."""

import orjson
import pytest

from tests.conftest import CALLER_KEY


async def ask(nc, subject: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    msg = await nc.request(f"integrations.v1.mcp.{subject}", orjson.dumps(body), timeout=10, headers=headers)
    return int(msg.headers["x-status"]), orjson.loads(msg.data)


@pytest.fixture
def caller(tenant) -> dict[str, str]:
    return {"x-api-key": CALLER_KEY, "x-org-id": tenant.org}


async def test_authenticate(nc, caller, tenant):
    status, body = await ask(nc, "authenticate", {}, caller)
    assert status == 200 and body["org"] == tenant.org and body["principal"]["type"] == "api_key"
    status, body = await ask(nc, "authenticate", {}, {"x-api-key": "nope"})
    assert status == 401 and body["reason"] == "unauthenticated"


async def test_pages_and_cursors(nc, caller):
    status, first = await ask(nc, "tools.list", {}, caller)
    assert status == 200 and len(first["tools"]) == 25 and first["nextCursor"]
    status, second = await ask(nc, "tools.list", {"cursor": first["nextCursor"]}, caller)
    assert status == 200 and second["tools"][0]["name"] > first["tools"][-1]["name"]
    status, body = await ask(nc, "tools.list", {"cursor": "not-a-cursor"}, caller)
    assert status == 400 and body["reason"] == "invalid_cursor"
    status, body = await ask(nc, "info", {}, caller)
    assert status == 200 and body["capabilities"]["tools"] is True and body["endpoint"] == "/api/integrations/mcp"


async def test_calls(nc, caller):
    status, result = await ask(nc, "tools.call", {"name": "tools_tool_add", "arguments": {"a": 4, "b": 5}}, caller)
    assert status == 200 and result["structuredContent"] == {"result": 9} and result["isError"] is False
    status, body = await ask(nc, "tools.call", {"name": "nope", "arguments": {}}, caller)
    assert status == 404 and body["reason"] == "tool_not_found"
    status, body = await ask(nc, "tools.call", {"name": "tools_tool_add", "arguments": {"a": 1}}, caller)
    assert status == 400 and body["reason"] == "invalid_arguments" and "'b' is a required property" in body["error"]
    assert body["provider"] == "tools" and body["operation"] == "tools.tool.add"
    status, result = await ask(nc, "tools.call", {"name": "httpbin_status_code_status_codes_get",
                                                  "arguments": {"codes": "418"}}, caller)
    assert status == 200 and result["isError"] is True and "HTTP 418" in result["content"][0]["text"]


async def test_a_bus_callers_deadline_bounds_a_tool_call(nc, caller):
    """tools/call runs through invoke, deadline included (docs/RESILIENCE.md): an upstream slower
    than the caller's x-timeout-ms is cut off with 504 deadline_exceeded."""
    status, body = await ask(nc, "tools.call", {"name": "httpbin_delay_response_delay_delay_get",
                                                "arguments": {"delay": 2}}, {**caller, "x-timeout-ms": "400"})
    assert status == 504 and body["reason"] == "deadline_exceeded" and body["category"] == "timeout"
    assert body["provider"] == "httpbin"
