"""The HTTP side of the endpoint with a plain HTTP client: authentication and Origin before the
session, notifications answered 202 with no body, every handshake revision, sessions bound to
their caller, the exact path and its alias."""

import json

import httpx
import pytest

from tests.conftest import CALLER_KEY
from tests.registry.mcp_endpoint.conftest import ALLOWED_ORIGIN, ENDPOINT, MAX_BODY

ACCEPT = "application/json, text/event-stream"


def init(version: str = "2025-11-25", request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}


def messages(response: httpx.Response) -> list[dict]:
    """The JSON-RPC messages of a response, JSON or SSE."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        lines = response.text.splitlines()
        return [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip()]
    return [response.json()]


@pytest.fixture
async def raw(gateway):
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        yield client


def headers_for(tenant, **extra) -> dict[str, str]:
    return {**tenant.headers, "Accept": ACCEPT, "Content-Type": "application/json", **extra}


async def open_session(raw, tenant, version: str = "2025-11-25", path: str = ENDPOINT) -> tuple[str, dict]:
    response = await raw.post(path, headers=headers_for(tenant), json=init(version))
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"], messages(response)[0]


async def test_unauthenticated_requests_never_reach_the_session(raw, tenant):
    for headers in ({}, {"X-API-Key": "wrong-key"}, {"Authorization": "Bearer wrong-key"}):
        for method in ("POST", "GET", "DELETE"):
            response = await raw.request(method, ENDPOINT, json=init() if method == "POST" else None,
                                         headers={"Accept": ACCEPT, "Content-Type": "application/json", **headers})
            assert response.status_code == 401, (method, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer ")
            body = response.json()
            assert body["success"] is False and body["reason"] == "unauthenticated" and body["category"] == "auth"
            assert "mcp-session-id" not in response.headers


async def test_bearer_works_like_the_api_key_and_org_rules_apply(raw, tenant, acme_key):
    response = await raw.post(ENDPOINT, headers={"Authorization": f"Bearer {CALLER_KEY}", "Accept": ACCEPT,
                                                 "Content-Type": "application/json"}, json=init())
    assert response.status_code == 200 and messages(response)[0]["result"]["protocolVersion"] == "2025-11-25"
    forbidden = await raw.post(ENDPOINT, headers={"X-API-Key": acme_key, "X-Org-Id": "not-acme", "Accept": ACCEPT,
                                                  "Content-Type": "application/json"}, json=init())
    assert forbidden.status_code == 403 and forbidden.json()["reason"] == "org_forbidden"


async def test_origin_is_checked_before_anything_else(raw, tenant):
    for headers in (headers_for(tenant, Origin="http://evil.example"), {"Origin": "http://127.0.0.1:9"}):
        response = await raw.post(ENDPOINT, headers=headers, json=init())
        assert response.status_code == 403 and response.json()["reason"] == "origin_not_allowed", response.text
    allowed = await raw.post(ENDPOINT, headers=headers_for(tenant, Origin=ALLOWED_ORIGIN), json=init())
    assert allowed.status_code == 200


async def test_notifications_get_202_and_no_body(raw, tenant):
    session, _ = await open_session(raw, tenant)
    response = await raw.post(ENDPOINT, headers=headers_for(tenant, **{"Mcp-Session-Id": session,
                                                                       "MCP-Protocol-Version": "2025-11-25"}),
                              json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status_code == 202 and response.content == b""
    modern = await raw.post(ENDPOINT, headers=headers_for(tenant, **{"MCP-Protocol-Version": "2026-07-28"}),
                            json={"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
    assert modern.status_code == 202 and modern.content == b""


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
async def test_every_handshake_revision_is_served(raw, tenant, version):
    session, reply = await open_session(raw, tenant, version)
    result = reply["result"]
    assert result["protocolVersion"] == version and result["serverInfo"]["name"] == "symbia-integrations"
    assert result["capabilities"]["tools"]["listChanged"] is True
    headers = headers_for(tenant, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": version})
    await raw.post(ENDPOINT, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    listed = messages(await raw.post(ENDPOINT, headers=headers,
                                     json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))[0]["result"]
    assert len(listed["tools"]) == 25 and listed["nextCursor"]
    called = messages(await raw.post(ENDPOINT, headers=headers, json={
        "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "tools_tool_add",
                                                                      "arguments": {"a": 1, "b": 2}}}))[-1]["result"]
    assert called["content"][0]["text"] == "3"



async def test_the_2026_protocol_is_stateless(raw, tenant):
    headers = headers_for(tenant, **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"})
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    response = await raw.post(ENDPOINT, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                                                               "params": {"_meta": meta}})
    assert response.status_code == 200 and "mcp-session-id" not in response.headers
    result = messages(response)[0]["result"]
    assert result["supportedVersions"] == ["2026-07-28"] and result["capabilities"]["tools"]["listChanged"] is True
    stream = await raw.get(ENDPOINT, headers=headers_for(tenant, **{"MCP-Protocol-Version": "2026-07-28"}))
    assert stream.status_code == 405


async def test_sessions_are_bound_to_the_caller_that_opened_them(raw, tenant, acme_key):
    session, _ = await open_session(raw, tenant)
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for intruder in ({"X-API-Key": acme_key, "X-Org-Id": "acme"}, {"X-API-Key": CALLER_KEY, "X-Org-Id": "acme"}):
        response = await raw.post(ENDPOINT, json=listing, headers={
            **intruder, "Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": session,
            "MCP-Protocol-Version": "2025-11-25"})
        assert response.status_code == 404, response.text
    own = headers_for(tenant, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    assert (await raw.post(ENDPOINT, json=listing, headers=own)).status_code == 200
    assert (await raw.delete(ENDPOINT, headers=own)).status_code == 200
    assert (await raw.post(ENDPOINT, json=listing, headers=own)).status_code == 404


async def test_exact_path_and_alias_without_redirects(raw, tenant):
    for path in (ENDPOINT, "/api/api/integrations/mcp"):
        response = await raw.post(path, headers=headers_for(tenant), json=init())
        assert response.status_code == 200 and not response.is_redirect, path
    batch = await raw.post(ENDPOINT, headers=headers_for(tenant), json=[init(), init(request_id=2)])
    assert batch.status_code == 400
    huge = await raw.post(ENDPOINT, headers=headers_for(tenant), json={**init(), "pad": "x" * MAX_BODY})
    assert huge.status_code == 413 and huge.json()["reason"] == "body_too_large"


async def test_chunked_bodies_are_counted_while_read(raw, tenant):
    """A chunked body declares no length: it is counted as it arrives (413 envelope before the
    caller is even authenticated), and one within the limit reaches the SDK intact."""
    def chunked(payload: bytes, size: int = 4096):
        async def chunks():
            for start in range(0, len(payload), size):
                yield payload[start:start + size]
        return chunks()

    oversize = json.dumps({**init(), "pad": "x" * MAX_BODY}).encode()
    response = await raw.post(ENDPOINT, headers={"Accept": ACCEPT, "Content-Type": "application/json"},
                              content=chunked(oversize))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["reason"] == "body_too_large" and body["category"] == "validation" and body["success"] is False

    response = await raw.post(ENDPOINT, headers=headers_for(tenant), content=chunked(json.dumps(init()).encode(), 7))
    assert response.status_code == 200, response.text
    assert messages(response)[0]["result"]["protocolVersion"] == "2025-11-25"
