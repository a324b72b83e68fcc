"""Pure parts of the registry and invoke: OpenAPI parsing rules, the outbound guard, request
building, credentials, the stdio allow-list."""

import base64

import pytest

from service.errors import GatewayError
from service.invoke.auth import apply_auth, normalize_auth
from service.invoke.http import build_request
from service.mcp.client import stdio_allowed
from service.outbound import OutboundDenied, OutboundGuard
from service.providers.base import UpstreamCall
from service.registry.namespace import build_namespace, dotted_id, walk
from service.registry.openapi import (
    SpecError,
    generated_operation_id,
    load_document,
    parse_spec,
    server_url,
)
from service.transport import OUTBOUND, UpstreamTransport


@pytest.mark.parametrize(("operation_id", "expected"), [
    ("createChatCompletion", "chat.completion.create"),
    ("listModels", "models.list"),
    ("retrieveModel", "retrieve.model"),
    ("sendMessage", "send.message"),
    ("getHTTPStatus", "h.t.t.p.status.get"),
    ("anything_anything_post", "anything.anything.post"),
    ("status_code_status__codes__get", "status.code.status.codes.get"),
    ("pets.list", "pets.list"),
])
def test_dotted_ids_follow_the_original(operation_id, expected):
    assert dotted_id(operation_id) == expected


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/v1/users/{id}/posts", "users_posts_get"),
    ("POST", "/auth/login", "auth_login_post"),
    ("GET", "/", "get"),
])
def test_generated_operation_ids(method, path, expected):
    assert generated_operation_id(method, path) == expected


def test_ids_are_unique_and_stable():
    spec = {"openapi": "3.0.0", "paths": {
        "/users": {"get": {}}, "/users/{id}": {"get": {}},           # both generate users_get
        "/a": {"get": {"operationId": "dup"}}, "/b": {"get": {"operationId": "dup"}}}}
    ids = [op["id"] for op in parse_spec(spec).operations]
    assert ids == ["users.get", "users.get.2", "dup", "dup.2"]
    assert ids == [op["id"] for op in parse_spec(spec).operations]
    op_ids = [op["operationId"] for op in parse_spec(spec).operations]
    assert op_ids == ["users_get", "users_get_2", "dup", "dup_2"]


def test_local_refs_resolve_and_cycles_stop():
    spec = {"openapi": "3.1.0", "paths": {"/n": {"post": {
        "parameters": [{"$ref": "#/components/parameters/Q"}],
        "requestBody": {"$ref": "#/components/requestBodies/Node"},
        "responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}},
        "components": {
            "parameters": {"Q": {"name": "q", "in": "query", "schema": {"$ref": "#/components/schemas/S"}}},
            "requestBodies": {"Node": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Node"}}}}},
            "schemas": {"S": {"type": "string"}, "Node": {"type": "object", "properties": {
                "child": {"$ref": "#/components/schemas/Node"}, "ext": {"$ref": "other.yaml#/X"}}}}}}
    op = parse_spec(spec).operations[0]
    assert op["parameters"] == [{"name": "q", "location": "query", "required": False, "schema": {"type": "string"}}]
    body = op["requestBody"]
    assert body["required"] is True and body["schema"]["type"] == "object"
    assert body["schema"]["properties"]["child"] == {"$ref": "#/components/schemas/Node"}
    assert body["schema"]["properties"]["ext"] == {"$ref": "other.yaml#/X"}       # never fetched
    assert op["responseSchema"]["type"] == "object"


@pytest.mark.parametrize(("doc", "spec_url", "override", "expected"), [
    ({"openapi": "3.0.0", "servers": [{"url": "https://api.openai.com/v1"}]}, None, "https://api.openai.com",
     "https://api.openai.com/v1"),                                          # the original dropped /v1
    ({"openapi": "3.0.0", "servers": [{"url": "https://api.example.com/v1"}]}, None, "http://proxy.local/x/",
     "http://proxy.local/x"),
    ({"openapi": "3.0.0", "servers": [{"url": "/api"}]}, "https://svc.example.com/docs/openapi.json", None,
     "https://svc.example.com/api"),
    ({"openapi": "3.0.0"}, "http://127.0.0.1:8080/openapi.json", None, "http://127.0.0.1:8080"),
    ({"openapi": "3.0.0"}, None, None, None),
    ({"openapi": "3.0.0", "servers": [{"url": "https://{region}.example.com/{v}",
                                       "variables": {"region": {"default": "eu"}, "v": {"default": "v2"}}}]},
     None, None, "https://eu.example.com/v2"),
    ({"swagger": "2.0", "host": "petstore.swagger.io", "basePath": "/v2", "schemes": ["http", "https"]}, None, None,
     "https://petstore.swagger.io/v2"),
    ({"swagger": "2.0", "basePath": "/api"}, "http://10.0.0.5:81/spec.json", None, "http://10.0.0.5:81/api"),
])
def test_server_urls(doc, spec_url, override, expected):
    version = "2.0" if "swagger" in doc else "3.0.0"
    assert server_url(doc, version, spec_url, override) == expected


@pytest.mark.parametrize(("schemes", "security", "expected"), [
    ({"b": {"type": "http", "scheme": "bearer"}}, None, {"type": "bearer"}),
    ({"k": {"type": "apiKey", "in": "query", "name": "key"}}, None, {"type": "apiKey", "in": "query", "name": "key"}),
    ({"b": {"type": "http", "scheme": "basic"}, "o": {"type": "oauth2"}}, [{"o": []}], {"type": "oauth2"}),
    ({}, None, {"type": "none"}),
])
def test_security_schemes_map_to_auth(schemes, security, expected):
    doc = {"openapi": "3.0.0", "paths": {}, "components": {"securitySchemes": schemes}}
    if security:
        doc["security"] = security
    assert parse_spec(doc).auth == expected


def test_yaml_documents_and_their_limits(monkeypatch):
    monkeypatch.setattr("service.registry.openapi._MAX_RESOLVED_NODES", 20_000)  # the bomb trips it sooner
    doc = load_document("openapi: 3.0.0\npaths:\n  /x:\n    get:\n      responses:\n        200: {description: ok}\n")
    assert doc["paths"]["/x"]["get"]["responses"]["200"] == {"description": "ok"}
    bomb = "a: &a [x, x]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}, "
                                      f"*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(40))
    with pytest.raises(SpecError):
        load_document(bomb)
    with pytest.raises(SpecError):
        load_document("[1, 2]")
    with pytest.raises(SpecError, match="not an OpenAPI"):
        parse_spec({"info": {}})


def test_namespace_walks_to_leaves_only():
    ops = [{"id": "chat.completions.create", "method": "POST", "path": "/c"}, {"id": "chat.completions"}]
    tree = build_namespace(ops)
    assert walk(tree, "chat.completions.create") == "chat.completions.create"
    assert walk(tree, "chat.completions") == "chat.completions"
    assert walk(tree, "chat") is None and walk(tree, "chat._operation") is None


def test_the_guard():
    guard = OutboundGuard(["127.0.0.1", "*.corp.example", "10.20.0.0/16", "Intranet"])
    for url in ("http://127.0.0.1:8080/x", "https://api.corp.example/x", "http://10.20.3.4/", "http://intranet/",
                "https://example.com/spec.json", "http://[2606:4700::1111]/"):
        guard.check_url(url)
    for url in ("http://127.0.0.2/", "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
                "http://224.0.0.1/", "http://0.0.0.0/", "gopher://example.com/", "http:///nohost",
                "http://u:p@example.com/", "http://[fd00:ec2::254]/"):
        with pytest.raises(GatewayError) as caught:
            guard.check_url(url)
        assert caught.value.status == 403
    guard.check_addresses("intranet", ["10.9.9.9"])          # allow-listed by name
    with pytest.raises(OutboundDenied):
        guard.check_addresses("evil.example", ["93.184.216.34", "127.0.0.1"])   # any bad address denies


async def test_the_guard_resolves_names():
    with pytest.raises(OutboundDenied):
        await OutboundGuard(["127.0.0.1"]).resolve("localhost", 80)
    assert await OutboundGuard(["localhost"]).resolve("localhost", 80)


def test_request_building_encodes_and_protects():
    op = {"method": "POST", "path": "/items/{id}/tags", "parameters": [
        {"name": "id", "location": "path"}, {"name": "X-Rate", "location": "header"},
        {"name": "session", "location": "cookie"}, {"name": "ids", "location": "query", "explode": False},
        {"name": "filter", "location": "query", "style": "deepObject"}],
        "requestBody": {"contentType": "application/json"}}
    auth = apply_auth(normalize_auth({"type": "apiKey", "in": "query", "name": "key"}), "s3cr3t&", None)
    request = build_request(op, {"id": "a/b c", "X-Rate": 5, "session": "x y", "ids": [1, 2], "filter": {"a": 1},
                                 "extra": True}, {"k": "v"},
                            {"Authorization": "Bearer mine", "Host": "evil", "X-Symbia-Org": "o", "X-Ok": "1"},
                            "https://api.example.com/v1/", auth, authenticated=True)
    assert request.url == ("https://api.example.com/v1/items/a%2Fb%20c/tags?ids=1%2C2&filter%5Ba%5D=1&extra=true"
                           "&key=s3cr3t%26")
    assert request.headers["x-rate"] == "5" and request.headers["cookie"] == "session=x%20y"
    assert request.headers["x-ok"] == "1" and "authorization" not in request.headers and "host" not in request.headers
    assert not any(k.startswith("x-symbia") for k in request.headers)
    assert request.body == b'{"k":"v"}' and request.headers["content-type"] == "application/json"
    with pytest.raises(GatewayError):
        build_request(op, {"id": ".."}, None, {}, "https://api.example.com", auth)
    with pytest.raises(GatewayError):
        build_request(op, {}, None, {}, "https://api.example.com", auth)
    with pytest.raises(GatewayError):
        build_request(op, {"id": "1"}, None, {"Bad\nName": "x"}, "https://api.example.com", auth)


def test_credentials_by_auth_type():
    assert apply_auth({"type": "bearer"}, "t", None).headers == {"Authorization": "Bearer t"}
    basic = apply_auth({"type": "basic"}, "user:pa:ss", None).headers["Authorization"]
    assert base64.b64decode(basic.split()[1]) == b"user:pa:ss"
    assert apply_auth(normalize_auth({"type": "header", "header": "X-K"}), "v", None).headers == {"X-K": "v"}
    assert apply_auth(normalize_auth({"type": "apiKey"}), "v", None).headers == {"X-API-Key": "v"}
    path = apply_auth(normalize_auth({"type": "path"}), "12:ab/cd", "https://api.telegram.org/bot{token}")
    assert path.server_url == "https://api.telegram.org/bot12%3Aab%2Fcd"
    assert normalize_auth(None, {"authType": "path"})["type"] == "path"
    with pytest.raises(GatewayError):
        apply_auth({"type": "path", "placeholder": "token"}, "x", "https://no-placeholder.example")


def test_stdio_allow_list():
    allow = ("uvx", "node /opt/servers/everything.js stdio")
    assert stdio_allowed(allow, "uvx", ["mcp-server-fetch"])
    assert stdio_allowed(allow, "node", ["/opt/servers/everything.js", "stdio"])
    assert not stdio_allowed(allow, "node", ["-e", "require('child_process')"])
    assert not stdio_allowed(allow, "/usr/bin/uvx", [])
    assert not stdio_allowed((), "uvx", [])


async def test_streams_to_outbound_urls_pass_the_guard():
    """open_stream applies the same guard as fetch to the OUTBOUND family (nothing is sent)."""
    transport = UpstreamTransport(4, 1 << 20, OutboundGuard())
    try:
        with pytest.raises(GatewayError) as refused:
            await transport.open_stream(OUTBOUND, UpstreamCall("POST", "http://127.0.0.1:9/v1/chat/completions"),
                                        1, provider="x", operation="chat.completions")
        assert refused.value.status == 403 and refused.value.reason == "outbound_denied"
    finally:
        await transport.close()
