"""Registry operation → MCP tool schemas (JSON Schema 2020-12), and tool arguments → the params
and body of an invoke request.

inputSchema (root `type: object`):
* OpenAPI operations: a property per path, query, header and cookie parameter, plus the top-level
  properties of an object request body (flattened: models fill flat arguments more reliably). A
  body that is not an object with properties is one argument `body`. On a clash the body keeps
  the plain name and the parameter becomes `<name>__<location>`. Parameters the gateway sets
  itself (credentials, content negotiation) are not arguments; `readOnly` body properties neither.
  Extra arguments are refused unless the body schema admits additional properties (they go to
  the body).
* MCP tools: the upstream tool's inputSchema; MCP resources and prompts: their parameters.
  Provider built-ins: the execute `params` schema. All of these take the arguments as the body.

OpenAPI 3.0 / Swagger idioms are converted (nullable, boolean exclusive bounds, `example`,
`type: file`, tuple `items`), vendor extensions and OpenAPI-only keywords dropped, and references
the registry left unresolved (cycles, external documents) become `{}`. The result is checked
against the 2020-12 metaschema; a property that fails is relaxed to `{}` instead of losing the tool.

outputSchema describes the documented response without the constraints real APIs routinely
violate (required, closed objects, enums, bounds; every type admits null; oneOf read as anyOf), so
a working call is not turned into a failure by a strict client. A root that is not an object is
wrapped as `{"result": ...}` (the 2025 revisions require an object root), and so is the result.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains", "propertyNames",
               "not", "if", "then", "else", "items")
_OPENAPI_ONLY = frozenset({"discriminator", "xml", "externalDocs", "collectionFormat", "nullable"})
_CONSTRAINTS = frozenset({"required", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
                          "minProperties", "maxProperties", "minContains", "maxContains", "dependentRequired"})
# Headers the gateway sets on the upstream request; a model is never asked for them.
_GATEWAY_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "content-type", "content-length",
                              "accept", "host", "x-api-key"})
_MAX_DEPTH = 64
_STRUCTURAL = frozenset({"type", "properties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "enum", "const"})
EMPTY_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False}


class _Budget:
    """Bounds the conversion of hostile or huge schemas (nodes visited)."""

    def __init__(self, limit: int = 200_000) -> None:
        self.left = limit

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _convert(node: Any, budget: _Budget, depth: int, *, output: bool) -> Any:
    """One OpenAPI schema → JSON Schema 2020-12 (a new object; the input is never modified)."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict) or depth > _MAX_DEPTH or not budget.spend():
        return {}
    if isinstance(node.get("$ref"), str):
        # Whatever the registry left as a reference did not resolve inside the document.
        return {"description": node["description"]} if isinstance(node.get("description"), str) else {}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _OPENAPI_ONLY or key == "$schema":
            continue
        if key in _SCHEMA_MAPS:
            if isinstance(value, dict):
                out[key] = {name: _convert(sub, budget, depth + 1, output=output) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            if isinstance(value, list):
                out[key] = [_convert(sub, budget, depth + 1, output=output) for sub in value]
        elif key == "items" and isinstance(value, list):        # draft-4 tuples
            out["prefixItems"] = [_convert(sub, budget, depth + 1, output=output) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = _convert(value, budget, depth + 1, output=output)
        elif key == "example":
            out.setdefault("examples", [value])
        elif key == "examples":
            if isinstance(value, list):
                out["examples"] = value
        else:
            out[key] = value
    if out.get("type") == "file":                              # Swagger 2.0 upload
        out["type"], out["format"] = "string", "binary"
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):     # OpenAPI 3.0 booleans
        if isinstance(out.get(bound), bool):
            limit = "minimum" if bound == "exclusiveMinimum" else "maximum"
            if out.pop(bound) and limit in out:
                out[bound] = out.pop(limit)
    if node.get("nullable") is True:
        _admit_null(out)
    _drop_one_way(out, "writeOnly" if output else "readOnly")
    if output:
        _relax(out)
    return out


def _admit_null(schema: dict[str, Any]) -> None:
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]


def _drop_one_way(schema: dict[str, Any], flag: str) -> None:
    """Request bodies lose `readOnly` properties (server-assigned), responses `writeOnly` ones."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    dropped = {name for name, sub in props.items() if isinstance(sub, dict) and sub.get(flag) is True}
    if dropped:
        schema["properties"] = {k: v for k, v in props.items() if k not in dropped}
        if isinstance(schema.get("required"), list):
            schema["required"] = [r for r in schema["required"] if r not in dropped]


def _relax(schema: dict[str, Any]) -> None:
    for key in _CONSTRAINTS:
        schema.pop(key, None)
    if schema.get("additionalProperties") is False:
        del schema["additionalProperties"]
    if schema.get("unevaluatedProperties") is False:
        del schema["unevaluatedProperties"]
    if "oneOf" in schema:
        schema["anyOf"] = [*schema.get("anyOf", []), *schema.pop("oneOf")]
    if "type" in schema:
        _admit_null(schema)


class _MetaCheck:
    """Whether a schema is a well-formed JSON Schema (the keyword shapes: `type` names, numeric
    bounds, `required` lists...). The Draft 7 metaschema checks those shapes ~6x faster than the
    2020-12 one (whose dynamic references dominate with this validator); verdicts are cached by
    content, so the provider schemas shared by every org are checked once per process."""

    def __init__(self, size: int = 8192) -> None:
        self._meta: Any = None
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self._size = size

    def __call__(self, schema: Any) -> bool:
        try:
            key = hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).digest()
        except (TypeError, orjson.JSONEncodeError):
            return False
        verdict = self._verdicts.get(key)
        if verdict is None:
            if self._meta is None:
                from jsonschema import Draft7Validator  # ~0.1 s to import: only where tools are built

                self._meta = Draft7Validator(Draft7Validator.META_SCHEMA)
            try:
                verdict = bool(self._meta.is_valid(schema))
            except RecursionError:
                verdict = False
            self._verdicts[key] = verdict
            while len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)
        return verdict


_valid = _MetaCheck()


def _strip_header_mirrors(node: Any, depth: int = 0) -> Any:
    """Upstream MCP schemas pass through, minus `x-mcp-header` (it would make 2026 clients copy
    argument values into HTTP headers meant for the upstream server, not for us)."""
    if depth > _MAX_DEPTH:
        return node
    if isinstance(node, dict):
        return {k: _strip_header_mirrors(v, depth + 1) for k, v in node.items() if k != "x-mcp-header"}
    if isinstance(node, list):
        return [_strip_header_mirrors(v, depth + 1) for v in node]
    return node


@dataclass(slots=True)
class ArgumentPlan:
    """Where each argument of a tool call goes in the invoke request."""

    all_to_body: bool = False                         # MCP operations and provider built-ins
    params: dict[str, str] = field(default_factory=dict)   # argument → declared parameter name
    body_properties: frozenset[str] = frozenset()     # flattened body properties
    body_argument: str | None = None                  # the whole body as one argument
    extras_to_body: bool = False
    body_required: bool = False

    def split(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        if self.all_to_body:
            return {}, dict(arguments)
        params: dict[str, Any] = {}
        body: dict[str, Any] = {}
        whole: Any = None
        for name, value in arguments.items():
            if name in self.params:
                params[self.params[name]] = value
            elif name == self.body_argument:
                whole = value
            elif name in self.body_properties or self.extras_to_body:
                body[name] = value
            else:
                params[name] = value   # not reached after validation; the query string, as invoke does
        if self.body_argument is not None:
            return params, whole
        if body or (self.body_required and self.body_properties):
            return params, body
        return params, None


@dataclass(slots=True)
class ToolSchemas:
    input: dict[str, Any]
    plan: ArgumentPlan
    output: dict[str, Any] | None = None
    wrap_output: bool = False


def _root(properties: dict[str, Any], required: list[str], additional: Any,
          defs: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if additional is not True:
        schema["additionalProperties"] = additional
    if defs:
        schema["$defs"] = defs
    return schema


def _object_body(schema: Any) -> bool:
    return (isinstance(schema, dict) and isinstance(schema.get("properties"), dict)
            and schema.get("type") in (None, "object") and not any(k in schema for k in ("oneOf", "anyOf", "allOf")))


def _skipped(param: dict[str, Any], auth: dict[str, Any]) -> bool:
    name, location = str(param.get("name", "")).lower(), param.get("location")
    secret = str(auth.get("name") or auth.get("header") or "").lower() if auth.get("type") == "apiKey" else ""
    if location == "header" and (name in _GATEWAY_HEADERS or name == secret):
        return True
    return location in ("query", "cookie") and bool(secret) and name == secret and auth.get("in") == location


def _relaxed_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema that fails the metaschema loses only the properties that fail it."""
    if _valid(schema):
        return schema
    props = {name: (sub if _valid(sub) else {}) for name, sub in (schema.get("properties") or {}).items()}
    relaxed = {**schema, "properties": props}
    if _valid(relaxed):
        return relaxed
    return dict(EMPTY_INPUT, additionalProperties=True)


def openapi_input(op: dict[str, Any], auth: dict[str, Any]) -> tuple[dict[str, Any], ArgumentPlan]:
    budget = _Budget()
    properties: dict[str, Any] = {}
    required: list[str] = []
    plan = ArgumentPlan()
    additional: Any = False
    defs: dict[str, Any] | None = None

    request_body = op.get("requestBody") or None
    body_schema = request_body.get("schema") if isinstance(request_body, dict) else None
    body_params = [p for p in op.get("parameters") or [] if p.get("location") == "body"]
    if body_schema is None and body_params:    # custom operations may declare body fields as parameters
        body_schema = {"type": "object", "properties": {p["name"]: p.get("schema") or {} for p in body_params},
                       "required": [p["name"] for p in body_params if p.get("required")]}
        request_body = {"required": bool(body_schema["required"])}
    if isinstance(body_schema, dict) or request_body is not None:
        converted = _convert(body_schema or {}, budget, 0, output=False)
        body_required = bool((request_body or {}).get("required"))
        plan.body_required = body_required
        if _object_body(converted):
            defs = converted.get("$defs")
            properties.update(converted["properties"])
            plan.body_properties = frozenset(converted["properties"])
            if body_required:
                required += [r for r in converted.get("required") or [] if r in properties]
            additional = converted.get("additionalProperties", True)
            plan.extras_to_body = additional is not False
        else:
            plan.body_argument = "body"
            properties["body"] = converted
            if body_required:
                required.append("body")

    for param in op.get("parameters") or []:
        location = param.get("location")
        if location not in ("path", "query", "header", "cookie") or _skipped(param, auth):
            continue
        name = str(param["name"])
        argument = name if name not in properties else f"{name}__{location}"
        schema = _convert(param.get("schema") or {"type": "string"}, budget, 0, output=False)
        if param.get("description") and "description" not in schema:
            schema["description"] = param["description"]
        properties[argument] = schema
        plan.params[argument] = name
        if param.get("required") or location == "path":
            required.append(argument)

    if not properties and additional is False:
        return dict(EMPTY_INPUT), plan
    return _relaxed_properties(_root(properties, required, additional, defs)), plan


def body_input(schema: Any) -> dict[str, Any]:
    """A JSON Schema that is already an object schema of the arguments (provider built-ins,
    upstream MCP tools): used as given, root made an object."""
    schema = _strip_header_mirrors(copy.deepcopy(schema)) if isinstance(schema, dict) else {}
    schema.pop("$schema", None)
    schema["type"] = "object"
    return schema if _valid(schema) else dict(EMPTY_INPUT, additionalProperties=True)


def parameters_input(op: dict[str, Any]) -> dict[str, Any]:
    """MCP resources (template variables, `uri`) and prompts (arguments): string parameters."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in op.get("parameters") or []:
        schema = dict(param.get("schema") or {"type": "string"})
        if param.get("description"):
            schema.setdefault("description", param["description"])
        properties[param["name"]] = schema
        if param.get("required"):
            required.append(param["name"])
    if not properties:
        return dict(EMPTY_INPUT)
    return _relaxed_properties(_root(properties, required, False))


def output_schema(schema: Any, *, convert: bool) -> tuple[dict[str, Any] | None, bool]:
    """(outputSchema, whether results are wrapped as {"result": ...}); None when there is none."""
    if not isinstance(schema, dict) or not schema:
        return None, False
    out = _convert(schema, _Budget(), 0, output=True) if convert else _strip_header_mirrors(copy.deepcopy(schema))
    out.pop("$schema", None)
    if not _STRUCTURAL & out.keys() or not _valid(out):
        return None, False    # a title alone (FastAPI's `{}` responses) says nothing about the result
    if ("type" not in out and "properties" in out) or out.get("type") == ["object", "null"]:
        out["type"] = "object"   # the root is the result itself: never null
    if out.get("type") == "object":
        return out, False
    # Local references point from the document root: definitions move up with the wrapping.
    wrapped: dict[str, Any] = {"type": "object", "properties": {"result": out}, "required": ["result"]}
    for defs in ("$defs", "definitions"):
        if defs in out:
            wrapped[defs] = out.pop(defs)
    return (wrapped, True) if _valid(wrapped) else (None, False)
