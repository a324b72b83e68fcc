"""OpenAPI integrations end to end over HTTP: httpbinx registered from its own OpenAPI 3.1
document and invoked with path, query, header and body parameters and every auth type; what
httpbinx echoes is what the gateway sent."""

import base64

import orjson
import pytest

from tests.conftest import CREDS_ORG, REGISTRY_CREDENTIALS
from tests.registry.conftest import as_org, must


async def register_httpbin(http, org, httpbin, key="httpbin", **extra) -> dict:
    body = {"key": key, "type": "openapi", "name": "httpbin",
            "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}, **extra}
    return must(await http.post("/api/integrations/register", json=body, headers=as_org(org)))


async def invoke(http, org, operation, **body) -> tuple[int, dict]:
    response = await http.post("/api/integrations/invoke", json={"operation": operation, **body},
                               headers=as_org(org))
    return response.status_code, response.json()


async def test_register_from_spec_url_keeps_the_parsed_server(http, org, httpbin):
    reply = await register_httpbin(http, org, httpbin)
    integration = reply["integration"]
    assert reply["created"] is True and reply["operationCount"] == len(integration["operations"]) > 40
    assert integration["openapi"]["serverUrl"] == httpbin.url      # spec has no servers: its own origin
    assert integration["scope"] == "org" and integration["org"] == org and integration["version"] == 1
    ids = {op["id"] for op in integration["operations"]}
    assert {"anything.anything.post", "get.get.get", "status.code.status.codes.get"} <= ids

    ops = must(await http.get("/api/integrations/registry/httpbin/operations", headers=as_org(org)))["operations"]
    assert {op["id"] for op in ops} == ids
    tree = must(await http.get("/api/integrations/namespace", headers=as_org(org)))["integrations"]["httpbin"]
    assert tree["anything"]["anything"]["post"]["_operation"] == "anything.anything.post"
    found = must(await http.get("/api/integrations/operations/search", params={"q": "BASE64"},
                                headers=as_org(org)))["results"]
    assert {r["integrationKey"] for r in found} == {"httpbin"}
    assert found[0]["integration"] == "httpbin" and "base64" in found[0]["operation"]["id"]


async def test_invoke_sends_path_query_header_and_body(http, org, httpbin):
    await register_httpbin(http, org, httpbin)
    status, reply = await invoke(
        http, org, "integrations.httpbin.anything.anything.post",
        params={"q": "a b&c", "tags": ["x", "y"], "flag": True},
        headers={"X-Custom": "custom-value", "x-symbia-caller": "spoofed"},
        body={"hello": "world", "n": 1})
    assert status == 200 and reply["success"] is True and reply["statusCode"] == 200, reply
    echoed = reply["data"]
    assert echoed["method"] == "POST"
    assert echoed["args"] == {"q": "a b&c", "tags": ["x", "y"], "flag": "true"}
    assert echoed["headers"]["x-custom"] == "custom-value"         # httpbinx lower-cases header names
    assert "x-symbia-caller" not in echoed["headers"]               # platform headers never go out
    assert not {"traceparent", "x-request-id", "x-org-id", "x-trace-id"} & set(echoed["headers"])
    assert orjson.loads(echoed["data"]) == {"hello": "world", "n": 1}
    assert echoed["headers"]["content-type"] == "application/json"
    assert reply["operation"] == "integrations.httpbin.anything.anything.post" and reply["integration"] == "httpbin"
    assert reply["requestId"].startswith("inv_") and reply["type"] == "api-call"

    # a declared path parameter, percent-encoded into its segment
    status, reply = await invoke(http, org, "httpbin.decode.base64.base64.value.get",
                                 params={"value": base64.urlsafe_b64encode(b"hi/there?").decode()})
    assert status == 200 and reply["data"] == "hi/there?", reply

    # lookup by operationId and by namespace path (reference §6.5)
    status, reply = await invoke(http, org, "httpbin.get_get_get", params={"x": "1"})
    assert status == 200 and reply["data"]["args"]["x"] == "1"


async def test_upstream_errors_are_reported_faithfully(http, org, httpbin):
    await register_httpbin(http, org, httpbin)
    status, reply = await invoke(http, org, "httpbin.status.code.status.codes.get", params={"codes": "418"})
    assert status == 200 and reply["success"] is False and reply["statusCode"] == 418
    assert "418" in reply["error"] and reply["requestId"]

    status, reply = await invoke(http, org, "httpbin.nope.nothing")
    assert status == 404 and reply["reason"] == "operation_not_found"
    assert reply["error"] == "Operation not found: httpbin.nope.nothing"
    status, reply = await invoke(http, org, "httpbin")
    assert status == 404
    for odd in ("a*b.c", ">.x", "httpbin..x", "integrations.", " .x"):
        status, reply = await invoke(http, org, odd)
        assert status == 404, (odd, reply)
    response = await http.get("/api/integrations/registry/%2A%3E", headers=as_org(org))
    assert response.status_code == 404
    status, reply = await invoke(http, org, "httpbin.decode.base64.base64.value.get", params={})
    assert status == 400 and "value" in reply["error"]
    status, reply = await invoke(http, org, "httpbin.decode.base64.base64.value.get", params={"value": ".."})
    assert status == 400


async def test_binary_bodies_come_back_as_base64(http, org, httpbin):
    await register_httpbin(http, org, httpbin)
    status, reply = await invoke(http, org, "httpbin.image.png.image.png.get")
    assert status == 200 and reply["encoding"] == "base64" and reply["contentType"] == "image/png"
    assert base64.b64decode(reply["data"]).startswith(b"\x89PNG")


async def test_timeouts_and_retries(http, org, httpbin):
    await register_httpbin(http, org, httpbin)
    status, reply = await invoke(http, org, "httpbin.delay.response.delay.delay.get", params={"delay": 2},
                                 timeout=500)
    assert status == 504 and reply["category"] == "timeout" and reply["provider"] == "httpbin"
    # retries only for idempotent methods, and only when asked: 503 three times → 3 attempts
    status, reply = await invoke(http, org, "httpbin.status.code.status.codes.get", params={"codes": "503"},
                                 retries=2)
    assert status == 200 and reply["statusCode"] == 503 and reply["attempts"] == 3
    # POST is not retried (here a POST whose 303 redirect leads to a 503)
    status, reply = await invoke(http, org, "httpbin.redirect.to.redirect.to.post",
                                 params={"url": "/status/503", "status_code": 303}, retries=2)
    assert reply["statusCode"] == 503 and "attempts" not in reply


@pytest.mark.parametrize(("key", "auth", "check"), [
    ("hb-bearer", {"type": "bearer"},
     lambda e: e["headers"]["authorization"] == "Bearer bearer-secret-123"),
    ("hb-apikey", {"type": "apiKey", "header": "X-Service-Key"},
     lambda e: e["headers"]["x-service-key"] == "apikey-secret-456"),
    ("hb-query", {"type": "apiKey", "in": "query", "name": "api_key"},
     lambda e: e["args"]["api_key"] == "query-secret-789"),
    ("hb-basic", {"type": "basic"},
     lambda e: base64.b64decode(e["headers"]["authorization"].split()[1]) == b"alice:wonder land"),
])
async def test_auth_types(http, httpbin, key, auth, check):
    org = CREDS_ORG                          # the test credentials are "creds/<key>"
    await register_httpbin(http, org, httpbin, key=key, auth=auth)
    status, reply = await invoke(http, org, f"{key}.anything.anything.get",
                                 headers={"Authorization": "Bearer caller-override", auth.get("header", "x"): "o"})
    assert status == 200, reply
    assert check(reply["data"]), reply["data"]
    # the caller's headers never replace the credential
    assert "caller-override" not in str(reply["data"]["headers"].get("authorization", ""))


async def test_path_auth_substitutes_the_token_in_the_server_url(http, httpbin):
    org = CREDS_ORG
    must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "hb-path", "type": "custom", "auth": {"type": "path"},
        "openapi": {"serverUrl": f"{httpbin.url}/base64/{{token}}"},
        "operations": [{"id": "decode", "method": "GET", "path": ""}]}))
    status, reply = await invoke(http, org, "hb-path.decode")
    assert status == 200 and reply["data"] == "secret-in-path", reply
    view = must(await http.get("/api/integrations/registry/hb-path", headers=as_org(org)))["integration"]
    assert REGISTRY_CREDENTIALS[f"{CREDS_ORG}/hb-path"] not in str(view)


async def test_missing_credential_is_a_400_auth_envelope(http, org, httpbin):
    await register_httpbin(http, org, httpbin, key="hb-nocred", auth={"type": "bearer"})
    status, reply = await invoke(http, org, "hb-nocred.get.get.get")
    assert status == 400 and reply["category"] == "auth"
    assert reply["reason"] == "integration_credential_missing"


async def test_another_orgs_or_a_global_credential_cannot_be_captured(http, org, httpbin, admin_key):
    """Registering a key that has a secret elsewhere (another org's entry, a global entry
    that does not exist yet) pointing at your own server does not get you that secret."""
    for key in ("hb-bearer", "global-bearer"):
        await register_httpbin(http, org, httpbin, key=key, auth={"type": "bearer"})
        status, reply = await invoke(http, org, f"{key}.anything.anything.get")
        assert status == 400 and reply["reason"] == "integration_credential_missing", reply
    # the bare key serves the global entry an admin registered
    must(await http.post("/api/integrations/register", headers=as_org("ops", admin_key), json={
        "key": "global-bearer", "type": "openapi", "scope": "global", "auth": {"type": "bearer"},
        "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}))
    status, reply = await invoke(http, "any-org", "global-bearer.anything.anything.get")
    assert status == 200 and reply["data"]["headers"]["authorization"] == "Bearer global-secret-ghi"


async def test_registering_an_inline_spec_with_an_unreachable_server_fails_at_invoke(http, org):
    spec = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {
        "/x": {"get": {"operationId": "getX", "responses": {"200": {"description": "ok"}}}}}}
    reply = must(await http.post("/api/integrations/register", headers=as_org(org),
                                 json={"key": "noserver", "type": "openapi", "openapi": {"spec": spec}}))
    assert reply["integration"]["operations"][0]["id"] == "x.get"
    status, body = await invoke(http, org, "noserver.x.get")
    assert status == 400 and body["reason"] == "integration_misconfigured"
