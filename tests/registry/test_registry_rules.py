"""Who sees and changes what: org scoping, built-ins read-only, global writes for admins,
explicit versioned updates, owners; SSRF refusals; secrets never in a reply."""

import orjson
import pytest

from tests.conftest import CREDS_ORG, REGISTRY_CREDENTIALS
from tests.registry.conftest import as_org, must

SPEC = {"openapi": "3.0.3", "info": {"title": "Tiny", "version": "1"}, "paths": {
    "/items/{id}": {"get": {"operationId": "getItem", "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok"}}}}}}


def tiny(key: str, server: str, **extra) -> dict:
    return {"key": key, "type": "openapi", "openapi": {"spec": SPEC, "serverUrl": server}, **extra}


async def test_an_orgs_integrations_are_invisible_to_other_orgs(http, org, httpbin):
    must(await http.post("/api/integrations/register", json=tiny("private-api", httpbin.url), headers=as_org(org)))
    other = org + "-other"
    assert (await http.get("/api/integrations/registry/private-api", headers=as_org(other))).status_code == 404
    listed = must(await http.get("/api/integrations/registry", headers=as_org(other)))["integrations"]
    assert "private-api" not in {i["key"] for i in listed}
    assert "private-api" in {i["key"] for i in must(await http.get("/api/integrations/registry",
                                                                    headers=as_org(org)))["integrations"]}
    response = await http.post("/api/integrations/invoke", json={"operation": "private-api.item.get",
                                                                 "params": {"id": "1"}}, headers=as_org(other))
    assert response.status_code == 404
    # another org may use the same key for its own entry
    must(await http.post("/api/integrations/register", json=tiny("private-api", httpbin.url), headers=as_org(other)))
    # and cannot delete or refresh the first org's entry (it does not see it)
    await http.delete("/api/integrations/registry/private-api", headers=as_org(other))
    assert (await http.get("/api/integrations/registry/private-api", headers=as_org(org))).status_code == 200


async def test_a_key_bound_to_one_org_cannot_act_in_another(http, acme_key, httpbin):
    response = await http.post("/api/integrations/register", json=tiny("x", httpbin.url),
                               headers=as_org("not-acme", acme_key))
    assert response.status_code == 403 and response.json()["reason"] == "org_forbidden"
    response = await http.get("/api/integrations/registry", headers=as_org("not-acme", acme_key))
    assert response.status_code == 403


@pytest.mark.parametrize("key", ["openai", "huggingface", "integrations"])
async def test_builtins_are_read_only_even_for_admins(http, org, httpbin, admin_key, key):
    for headers in (as_org(org), as_org(org, admin_key)):
        for scope in ("org", "global"):
            response = await http.post("/api/integrations/register", headers=headers,
                                       json=tiny(key, httpbin.url, scope=scope, auth={"type": "bearer"}))
            assert response.status_code == 403, response.text
            assert response.json()["reason"] in ("integration_read_only", "admin_required")
    assert (await http.delete(f"/api/integrations/registry/{key}", headers=as_org(org, admin_key))).status_code in (
        403, 404)
    openai = must(await http.get("/api/integrations/registry/openai", headers=as_org(org)))["integration"]
    assert openai["builtin"] is True and openai["type"] == "builtin" and openai["scope"] == "global"


async def test_global_entries_need_an_admin_and_are_shared(http, org, httpbin, admin_key):
    key = f"shared-{org}"
    response = await http.post("/api/integrations/register", json=tiny(key, httpbin.url, scope="global"),
                               headers=as_org(org))
    assert response.status_code == 403 and response.json()["reason"] == "admin_required"
    reply = must(await http.post("/api/integrations/register", json=tiny(key, httpbin.url, scope="global"),
                                 headers=as_org(org, admin_key)))
    assert reply["integration"]["scope"] == "global" and reply["integration"]["org"] is None
    seen = must(await http.get(f"/api/integrations/registry/{key}", headers=as_org("someone-else")))
    assert seen["integration"]["key"] == key
    # an org cannot take a global key for itself, and a member cannot change or delete it
    response = await http.post("/api/integrations/register", json=tiny(key, httpbin.url), headers=as_org(org))
    assert response.status_code == 409 and response.json()["reason"] == "integration_exists"
    response = await http.delete(f"/api/integrations/registry/{key}", headers=as_org(org))
    assert response.status_code == 403
    must(await http.delete(f"/api/integrations/registry/{key}", headers=as_org(org, admin_key)))
    assert (await http.get(f"/api/integrations/registry/{key}", headers=as_org(org))).status_code == 404


async def test_reregistering_is_an_explicit_versioned_update_by_the_owner(http, org, httpbin, acme_key):
    first = must(await http.post("/api/integrations/register", json=tiny("versioned", httpbin.url),
                                 headers=as_org(org)))["integration"]
    assert first["version"] == 1 and first["createdBy"] == "config-key-1"
    response = await http.post("/api/integrations/register", json=tiny("versioned", httpbin.url),
                               headers=as_org(org))
    assert response.status_code == 409 and response.json()["reason"] == "integration_exists"
    assert '"version": 1' in response.json()["error"]
    response = await http.post("/api/integrations/register", json=tiny("versioned", httpbin.url, version=7),
                               headers=as_org(org))
    assert response.status_code == 409 and response.json()["reason"] == "version_conflict"
    # a GET → edit → POST round trip is the update
    edited = {**first, "description": "second edition", "openapi": {"spec": SPEC, "serverUrl": httpbin.url}}
    second = must(await http.post("/api/integrations/register", json=edited, headers=as_org(org)))
    assert second["created"] is False and second["integration"]["version"] == 2
    assert second["integration"]["description"] == "second edition"

    # another principal of the same org cannot take it over
    must(await http.post("/api/integrations/register", json=tiny("acme-owned", httpbin.url),
                         headers=as_org("acme", acme_key)))
    response = await http.post("/api/integrations/register", json=tiny("acme-owned", httpbin.url, version=1),
                               headers=as_org("acme"))
    assert response.status_code == 403 and response.json()["reason"] == "not_owner"
    response = await http.delete("/api/integrations/registry/acme-owned", headers=as_org("acme"))
    assert response.status_code == 403
    must(await http.delete("/api/integrations/registry/acme-owned", headers=as_org("acme", acme_key)))


async def test_refresh_bumps_the_version_and_keeps_the_inline_spec(http, org, httpbin):
    must(await http.post("/api/integrations/register", json=tiny("refreshable", httpbin.url), headers=as_org(org)))
    reply = must(await http.post("/api/integrations/registry/refreshable/refresh", headers=as_org(org)))
    assert reply["integration"]["version"] == 2 and reply["operationCount"] == 1
    assert reply["integration"]["openapi"]["hasInlineSpec"] is True
    response = await http.post("/api/integrations/registry/absent/refresh", json={}, headers=as_org(org))
    assert response.status_code == 404
    response = await http.post("/api/integrations/registry/openai/refresh", headers=as_org(org))
    assert response.status_code == 403
    response = await http.post("/api/integrations/registry/refreshable/refresh", content=b"{nope",
                               headers=as_org(org))
    assert response.status_code == 400 and response.json()["reason"] == "invalid_json"


@pytest.mark.parametrize(("url", "what"), [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://127.0.0.2:9/openapi.json", "loopback not on the allow-list"),
    ("http://10.1.2.3/openapi.json", "private"),
    ("http://[::1]:9/openapi.json", "IPv6 loopback"),
    ("file:///etc/passwd", "scheme"),
    ("http://user:pw@example.com/openapi.json", "credentials in the URL"),
])
async def test_spec_urls_to_internal_addresses_are_refused(http, org, url, what):
    response = await http.post("/api/integrations/register", headers=as_org(org),
                                json={"key": "ssrf", "type": "openapi", "openapi": {"specUrl": url}})
    assert response.status_code == 403, (what, response.text)
    assert response.json()["reason"] == "outbound_denied"
    response = await http.post("/api/integrations/parse/openapi", json={"specUrl": url}, headers=as_org(org))
    assert response.status_code == 403


async def test_a_name_that_resolves_to_loopback_is_refused_after_dns(http, org, httpbin):
    url = f"http://localhost:{httpbin.port}/openapi.json"
    response = await http.post("/api/integrations/register", headers=as_org(org),
                               json={"key": "ssrf", "type": "openapi", "openapi": {"specUrl": url}})
    assert response.status_code == 403 and "non-public" in response.json()["error"]
    # the same refusal at invoke time, for a server URL that came from a spec
    must(await http.post("/api/integrations/register", headers=as_org(org),
                         json=tiny("via-dns", f"http://127.0.0.1:{httpbin.port}")))
    response = await http.post("/api/integrations/register", headers=as_org(org),
                               json=tiny("via-dns2", f"http://localhost:{httpbin.port}"))
    assert response.status_code == 200  # a name passes the static check...
    response = await http.post("/api/integrations/invoke", headers=as_org(org),
                               json={"operation": "via-dns2.item.get", "params": {"id": "1"}})
    assert response.status_code == 403 and response.json()["reason"] == "outbound_denied"  # ...not the resolver


async def test_redirects_to_denied_addresses_are_not_followed(http, org, httpbin):
    must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "redirector", "type": "openapi", "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}))
    for target in ("http://169.254.169.254/latest/meta-data/", f"http://127.0.0.2:{httpbin.port}/get",
                   f"http://localhost:{httpbin.port}/get"):
        response = await http.post("/api/integrations/invoke", headers=as_org(org), json={
            "operation": "redirector.redirect.to.redirect.to.get", "params": {"url": target}})
        assert response.status_code == 403, (target, response.text)
        assert response.json()["reason"] == "outbound_denied"
    # a spec URL that redirects to a denied address is refused too
    response = await http.post("/api/integrations/parse/openapi", headers=as_org(org), json={
        "specUrl": f"{httpbin.url}/redirect-to?url=http://169.254.169.254/openapi.json"})
    assert response.status_code == 403
    # while a redirect on an allowed host is followed
    response = await http.post("/api/integrations/invoke", headers=as_org(org), json={
        "operation": "redirector.redirect.to.redirect.to.get", "params": {"url": "/get?followed=yes"}})
    assert response.json()["data"]["args"] == {"followed": "yes"}


async def test_no_reply_of_the_registry_contains_a_secret(http, httpbin, mcp_server, worker):
    org = f"{CREDS_ORG}-secrets"             # has a credential for mcp-auth (discovery needs it)
    env_secret, header_secret = "env-secret-value-1", "header-secret-value-2"
    must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "mcp-auth", "type": "mcp", "auth": {"type": "bearer"},
        "mcp": {"transport": "http", "serverUrl": mcp_server.url, "env": {"TOKEN": env_secret},
                "headers": {"X-Upstream-Key": header_secret}}}))
    must(await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "hb-bearer", "type": "openapi", "auth": {"type": "bearer"},
        "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}))
    bodies = [
        (await http.get("/api/integrations/registry", headers=as_org(org))).content,
        (await http.get("/api/integrations/registry/mcp-auth", headers=as_org(org))).content,
        (await http.get("/api/integrations/registry/hb-bearer", headers=as_org(org))).content,
        (await http.get("/api/integrations/registry/mcp-auth/operations", headers=as_org(org))).content,
        (await http.get("/api/integrations/namespace", headers=as_org(org))).content,
        (await http.get("/api/integrations/operations/search", params={"q": "a"}, headers=as_org(org))).content,
        (await http.post("/api/integrations/registry/mcp-auth/refresh", headers=as_org(org))).content,
    ]
    secrets = [env_secret, header_secret, *REGISTRY_CREDENTIALS.values()]
    for body in bodies:
        for secret in secrets:
            assert secret.encode() not in body
    view = orjson.loads(bodies[1])["integration"]["mcp"]
    assert view["env"] == {"TOKEN": "[REDACTED]"} and view["headers"] == {"X-Upstream-Key": "[REDACTED]"}
    # sending the redacted view back keeps the stored secrets (the server still gets the header)
    integration = orjson.loads(bodies[-1])["integration"]       # the refresh made it version 2
    must(await http.post("/api/integrations/register", headers=as_org(org), json=integration))
    entry = await worker.services.registry_store.fetch(org, "mcp-auth")
    assert entry.mcp["env"] == {"TOKEN": env_secret} and entry.mcp["headers"] == {"X-Upstream-Key": header_secret}


async def test_secrets_cannot_be_stored_in_the_auth_config(http, org, httpbin):
    response = await http.post("/api/integrations/register", headers=as_org(org), json={
        "key": "inline-token", "type": "openapi", "auth": {"type": "bearer", "token": "sk-oops"},
        "openapi": {"spec": SPEC, "serverUrl": httpbin.url}})
    assert response.status_code == 400 and "sk-oops" not in response.text


async def test_invalid_registrations_are_clear_400s(http, org):
    cases = [
        ({"key": "Bad Key", "type": "openapi"}, "key"),
        ({"key": "ok", "type": "soap"}, "type"),
        ({"key": "ok", "type": "openapi", "openapi": {}}, "No spec URL"),
        ({"key": "ok", "type": "openapi", "openapi": {"spec": {"hello": "world"}}}, "not an OpenAPI"),
        ({"key": "ok", "type": "openapi", "openapi": {"spec": "a: [unclosed"}}, "neither JSON nor YAML"),
        ({"key": "ok", "type": "mcp", "mcp": {"transport": "http"}}, "serverUrl"),
    ]
    for body, fragment in cases:
        response = await http.post("/api/integrations/register", json=body, headers=as_org(org))
        assert response.status_code == 400, (body, response.text)
        assert fragment in response.json()["error"], (fragment, response.json()["error"])
    response = await http.get("/api/integrations/operations/search", headers=as_org(org))
    assert response.status_code == 400 and "'q' or 'tag'" in response.json()["error"]
