"""The official SDK client, in both protocol eras, against the gateway's MCP endpoint: list every
tool across pages, call a provider tool (llmock), an OpenAPI tool (httpbinx), a tool of a registered
MCP server, a tool whose operation id holds `.` and `_`; invalid arguments, upstream failures."""

import json
import re

import pytest
from mcp import MCPError
from mcp_types import INVALID_PARAMS

from tests.conftest import CALLER_KEY
from tests.registry.mcp_endpoint.conftest import ERAS, LEGACY, MODERN, all_tools, connect

pytestmark = pytest.mark.parametrize("mode", [LEGACY, MODERN])


async def test_connect_and_list_every_tool_across_pages(gateway, tenant, mode, http):
    async with connect(gateway, mode, tenant.headers) as client:
        assert client.protocol_version == ERAS[mode]
        tools, pages = await all_tools(client)
    names = [tool.name for tool in tools]
    assert pages >= 3 and len(names) == len(set(names)), (pages, len(names))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) for name in names)
    assert names == sorted(names)
    for expected in ("openai_chat_completions_create", "anthropic_messages_create", "symbia-labs_embeddings_create",
                     "httpbin_anything_anything_post", "httpbin_get_get_get", "tools_tool_add", "tools_tool_read_file",
                     "tools_resource_greeting", "tools_prompt_review", "files_docs_read_file"):
        assert expected in names, expected
    assert not any(name.startswith(("google_", "mistral_")) for name in names)   # no credential for those
    by_name = {tool.name: tool for tool in tools}
    get = by_name["httpbin_get_get_get"]
    assert get.annotations.read_only_hint is True
    assert by_name["httpbin_anything_anything_delete"].annotations.destructive_hint is True
    assert by_name["httpbin_anything_anything_post"].annotations.read_only_hint is False
    chat = by_name["openai_chat_completions_create"]
    assert chat.input_schema["required"] == ["model"] and "messages" in chat.input_schema["properties"]
    assert by_name["tools_tool_add"].input_schema["required"] == ["a", "b"]
    assert by_name["files_docs_read_file"].meta["io.symbia/operation"] == "docs.read_file"
    info = (await http.get("/api/integrations/mcp/info", headers=tenant.headers)).json()
    assert info["toolCount"] == len(names) and len(info["tools"]) == 50
    assert info["server"]["protocolVersions"][-1] == "2026-07-28"


async def test_call_a_provider_tool(gateway, tenant, mode, llmock):
    async with connect(gateway, mode, tenant.headers) as client:
        result = await client.call_tool("openai_chat_completions_create", {
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from mcp"}]})
    assert result.is_error is False, result
    assert result.content[0].text
    assert result.structured_content["model"] and result.structured_content["usage"]["totalTokens"] > 0
    assert any("hello from mcp" in str(r) for r in llmock.requests())


async def test_call_an_openapi_tool(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        result = await client.call_tool("httpbin_anything_anything_post", {})
        status = await client.call_tool("httpbin_status_code_status_codes_get", {"codes": "200"})
    assert result.is_error is False, result
    assert result.structured_content["method"] == "POST"
    assert status.is_error is False


async def test_call_tools_of_a_registered_mcp_server(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        add = await client.call_tool("tools_tool_add", {"a": 2, "b": 3})
        read = await client.call_tool("tools_tool_read_file", {"path": "/etc/motd"})
        greeting = await client.call_tool("tools_resource_greeting", {"name": "Ada"})
    assert add.is_error is False and add.structured_content == {"result": 5} and add.content[0].text == "5"
    assert read.content[0].text == "contents of /etc/motd"
    assert greeting.content[0].resource.text == "Hello, Ada!"


async def test_a_name_with_dot_and_underscore_round_trips(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        result = await client.call_tool("files_docs_read_file", {"path": "notes/a_b.txt"})
    assert result.is_error is False, result
    assert json.loads(result.structured_content["json"]) == {"path": "notes/a_b.txt"}   # httpbinx: serialized
    assert result.structured_content["url"].endswith("/anything")


async def test_invalid_arguments_are_a_readable_tool_error(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        wrong_type = await client.call_tool("tools_tool_add", {"a": "two", "b": 3})
        missing = await client.call_tool("files_docs_read_file", {})
        extra = await client.call_tool("httpbin_get_get_get", {"surprise": 1})
    assert wrong_type.is_error and "a: 'two' is not of type 'integer'" in wrong_type.content[0].text
    assert missing.is_error and "'path' is a required property" in missing.content[0].text
    assert extra.is_error and "surprise" in extra.content[0].text
    assert "invalid_arguments" in extra.content[0].text


async def test_upstream_failures_are_tool_errors(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        http_error = await client.call_tool("httpbin_status_code_status_codes_get", {"codes": "503"})
        if mode == LEGACY:   # era-independent, and the test server takes ~1 s to fail
            tool_error = await client.call_tool("tools_tool_fail", {"message": "disk on fire"})
            # the upstream server's own error result, passed on (the SDK server hides the exception text)
            assert tool_error.is_error and tool_error.content[0].text == "Error executing tool fail"
    assert http_error.is_error and "HTTP 503" in http_error.content[0].text


async def test_unknown_tool_is_a_protocol_error(gateway, tenant, mode):
    async with connect(gateway, mode, tenant.headers) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("no_such_tool", {})
    assert caught.value.error.code == INVALID_PARAMS and "Unknown tool" in caught.value.error.message


async def test_another_org_sees_none_of_these_tools(gateway, tenant, mode):
    async with connect(gateway, mode, {"X-API-Key": CALLER_KEY, "X-Org-Id": "someone-else"}) as client:
        tools, _ = await all_tools(client)
        with pytest.raises(MCPError):
            await client.call_tool("tools_tool_add", {"a": 1, "b": 2})
    assert not any(tool.name.startswith(("httpbin_", "tools_", "files_")) for tool in tools)
