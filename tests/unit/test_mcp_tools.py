"""Units of the MCP tool catalog: names, schemas, argument mapping, cursors, results."""

import random
import re
import string

import pytest

from service.errors import GatewayError
from service.invoke.service import InvokeResult
from service.mcp.endpoint import decode_cursor, encode_cursor
from service.mcp.results import tool_result
from service.mcp.schemas import openapi_input, output_schema
from service.mcp.toolset import assign_names, build_catalog, build_tool
from service.registry.model import Entry, OperationSet

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_names_keep_the_original_format_and_are_injective():
    claims = [("tools", "tool.read_file"), ("a_b", "c"), ("a", "b.c"), ("a", "b_c"), ("x", "weird op/{id}:v2")]
    names = assign_names(claims)
    assert names[0] == "tools_tool_read_file" and names[1] == "a_b_c"
    assert names[2].startswith("a_b_c_") and names[3].startswith("a_b_c_") and len(set(names)) == 5
    assert names[4] == "x_weird_op__id__v2"
    assert assign_names(claims) == names        # stable


def test_earlier_claims_keep_their_names_when_later_ones_collide():
    assert assign_names([("a_b", "c")]) == assign_names([("a_b", "c"), ("a", "b.c")])[:1]


def test_long_and_many_names_fit_and_never_collide():
    rng = random.Random(7)
    claims = [(rng.choice(["svc", "svc_x", "a-very-long-integration-key-that-takes-space"]),
               ".".join(rng.choice(["get", "user", "read_file", "x" * 40]) for _ in range(rng.randint(1, 4))))
              for _ in range(2000)]
    claims = list(dict.fromkeys(claims))
    names = assign_names(claims)
    assert len(set(names)) == len(claims) and all(NAME.match(n) for n in names)
    long = assign_names([("k", "x" * 100)])[0]
    assert len(long) == 64 and long == assign_names([("k", "x" * 100)])[0]


def entry(key: str, source: str = "user", org: str | None = "o", created: str = "2026-01-01") -> Entry:
    return Entry(key=key, org=org, type="builtin" if source == "provider" else "openapi", name=key.title(),
                 source=source, created_at=created, auth={"type": "none"})


def test_built_ins_claim_first_then_global_then_org_entries():
    ops = OperationSet([{"id": "completions.create", "method": "POST", "path": "/x"}], {})
    org_ops = OperationSet([{"id": "chat.completions.create", "method": "POST", "path": "/x"}], {})
    catalog = build_catalog([(entry("openai_chat", org="o"), ops), (entry("openai", "provider", None), org_ops)])
    names = {tool.key: tool.name for tool in catalog.tools}
    assert names["openai"] == "openai_chat_completions_create"
    assert names["openai_chat"].startswith("openai_chat_completions_create_")


def test_openapi_input_schema_and_argument_plan():
    op = {"id": "items.update", "method": "PUT", "path": "/items/{id}", "parameters": [
        {"name": "id", "location": "path", "required": True, "schema": {"type": "integer"}},
        {"name": "verbose", "location": "query", "schema": {"type": "boolean", "nullable": True}},
        {"name": "Authorization", "location": "header", "schema": {"type": "string"}},
        {"name": "X-Trace", "location": "header", "description": "trace"},
    ], "requestBody": {"required": True, "schema": {
        "type": "object", "required": ["id", "name", "created"], "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "name": {"type": "string", "example": "Ada", "x-internal": 1},
                       "created": {"type": "string", "readOnly": True},
                       "size": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                       "parent": {"$ref": "#/components/schemas/Item"}}}}}
    schema, plan = openapi_input(op, {"type": "bearer"})
    props = schema["properties"]
    assert set(props) == {"id", "name", "size", "parent", "id__path", "verbose", "X-Trace"}
    assert schema["required"] == ["id", "name", "id__path"] and schema["additionalProperties"] is False
    assert props["verbose"]["type"] == ["boolean", "null"] and props["name"]["examples"] == ["Ada"]
    assert "x-internal" not in props["name"] and props["parent"] == {}
    assert props["size"] == {"type": "number", "exclusiveMinimum": 0}
    assert props["X-Trace"] == {"type": "string", "description": "trace"}
    params, body = plan.split({"id": "abc", "id__path": 7, "verbose": True, "name": "n", "X-Trace": "t"})
    assert params == {"id": 7, "verbose": True, "X-Trace": "t"} and body == {"id": "abc", "name": "n"}


def test_non_object_bodies_are_one_argument_and_empty_operations_take_nothing():
    schema, plan = openapi_input({"id": "bulk", "requestBody": {"required": True, "schema": {
        "type": "array", "items": {"type": "string"}}}}, {})
    assert schema["properties"]["body"]["type"] == "array" and schema["required"] == ["body"]
    assert plan.split({"body": ["a"]}) == ({}, ["a"])
    schema, plan = openapi_input({"id": "ping", "method": "GET", "path": "/ping"}, {})
    assert schema == {"type": "object", "additionalProperties": False} and plan.split({}) == ({}, None)


def test_api_key_parameters_are_never_arguments():
    op = {"id": "q", "parameters": [{"name": "api_key", "location": "query"}, {"name": "q", "location": "query"}]}
    schema, _ = openapi_input(op, {"type": "apiKey", "in": "query", "name": "api_key"})
    assert set(schema["properties"]) == {"q"}


def test_output_schemas_describe_without_constraining():
    schema, wrapped = output_schema({"type": "object", "required": ["id"], "additionalProperties": False,
                                     "properties": {"id": {"type": "integer", "minimum": 1},
                                                    "kind": {"type": "string", "enum": ["a"]},
                                                    "secret": {"type": "string", "writeOnly": True}}}, convert=True)
    assert not wrapped and schema["type"] == "object" and "required" not in schema
    assert schema["properties"]["id"] == {"type": ["integer", "null"]} and "secret" not in schema["properties"]
    assert "enum" not in schema["properties"]["kind"]
    listing, wrapped = output_schema({"type": "array", "items": {"type": "string"}}, convert=True)
    assert wrapped and listing["properties"]["result"]["type"] == ["array", "null"]
    assert output_schema({"title": "Response"}, convert=True) == (None, False)


def test_cursors_round_trip_and_garbage_is_refused():
    assert decode_cursor(encode_cursor("httpbin_get_get_get")) == "httpbin_get_get_get"
    assert decode_cursor(None) is None
    for garbage in ("!!!", "e30", encode_cursor("x")[:-2] + "??"):
        with pytest.raises(GatewayError) as caught:
            decode_cursor(garbage)
        assert caught.value.reason == "invalid_cursor"


def http_tool(response_schema=None):
    op = {"id": "things.list", "method": "GET", "path": "/things", "responseSchema": response_schema}
    return build_tool(entry("svc"), op, "svc_things_list")


def test_results_of_http_operations():
    ok = tool_result(http_tool(), InvokeResult(success=True, data=[1, 2], type="api-call", status_code=200,
                                               content_type="application/json"))
    assert ok == {"content": [{"type": "text", "text": "[1,2]"}], "structuredContent": {"result": [1, 2]},
                  "isError": False}
    failed = tool_result(http_tool(), InvokeResult(success=False, data={"detail": "nope"}, type="api-call",
                                                   status_code=404, error="svc answered HTTP 404 Not Found"))
    assert failed["isError"] and failed["content"][0]["text"] == 'svc answered HTTP 404 Not Found\n{"detail":"nope"}'
    image = tool_result(http_tool(), InvokeResult(success=True, data="iVBOR", type="api-call", content_type="image/png",
                                                  encoding="base64"))
    assert image["content"] == [{"type": "image", "data": "iVBOR", "mimeType": "image/png"}]
    text = tool_result(http_tool(), InvokeResult(success=True, data="plain", type="api-call",
                                                 content_type="text/plain"))
    assert text == {"content": [{"type": "text", "text": "plain"}], "isError": False}


def test_results_that_break_the_advertised_schema_are_errors():
    tool = http_tool({"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}})
    good = tool_result(tool, InvokeResult(success=True, data=[{"id": 1}, {"id": None}], type="api-call",
                                          content_type="application/json"))
    assert good["structuredContent"] == {"result": [{"id": 1}, {"id": None}]} and not good["isError"]
    bad = tool_result(tool, InvokeResult(success=True, data={"id": "x"}, type="api-call",
                                         content_type="application/json"))
    assert bad["isError"] and "does not match its documented response schema" in bad["content"][0]["text"]


def test_random_operation_ids_always_give_valid_tools():
    rng = random.Random(3)
    for _ in range(200):
        op_id = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 90)))
        tool = build_tool(entry("k"), {"id": op_id, "method": "POST", "path": "/p"}, assign_names([("k", op_id)])[0])
        assert NAME.match(tool.name) and tool.wire["inputSchema"]["type"] == "object"


def test_the_announced_protocol_versions_are_the_sdks():
    from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS

    from contracts.mcp import PROTOCOL_VERSIONS

    assert tuple(SUPPORTED_PROTOCOL_VERSIONS) == PROTOCOL_VERSIONS
