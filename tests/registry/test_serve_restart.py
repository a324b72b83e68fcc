"""The issue's acceptance path with whole processes: `symbia-integrations serve` (embedded NATS
storing JetStream in the data dir), an OpenAPI service and an MCP server registered and invoked
over HTTP, the service restarted, both invoked again."""

import httpx
import pytest

from tests.e2e.test_serve import serve  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

HEADERS = {"X-API-Key": "dev-key", "X-Org-Id": "acme"}


def invoke(gw, operation: str, **body) -> dict:
    response = httpx.post(f"{gw.url}/api/integrations/invoke", json={"operation": operation, **body},
                          headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_registrations_survive_a_restart(serve, httpbin, mcp_server):  # noqa: F811
    env = {"INTEGRATIONS_API_KEYS": "dev-key", "INTEGRATIONS_OUTBOUND_ALLOW": "127.0.0.1"}
    gw = serve(**env)
    gw.wait_ready()
    for body in ({"key": "httpbin", "type": "openapi", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}},
                 {"key": "tools", "type": "mcp", "mcp": {"transport": "http", "serverUrl": mcp_server.url}}):
        response = httpx.post(f"{gw.url}/api/integrations/register", json=body, headers=HEADERS, timeout=30)
        assert response.status_code == 200, response.text
    assert invoke(gw, "httpbin.get.get.get", params={"run": "1"})["data"]["args"] == {"run": "1"}
    assert invoke(gw, "tools.tool.add", body={"a": 1, "b": 2})["data"]["structuredContent"] == {"result": 3}
    gw.proc.terminate()
    assert gw.proc.wait(30) == 0, gw.log

    again = serve(**env)
    again.wait_ready()
    listed = httpx.get(f"{again.url}/api/integrations/registry", headers=HEADERS, timeout=10).json()
    assert {"httpbin", "tools"} <= {i["key"] for i in listed["integrations"]}
    assert invoke(again, "httpbin.get.get.get", params={"run": "2"})["data"]["args"] == {"run": "2"}
    assert invoke(again, "tools.tool.add", body={"a": 2, "b": 2})["data"]["structuredContent"] == {"result": 4}
