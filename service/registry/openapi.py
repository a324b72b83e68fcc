"""OpenAPI 3.0/3.1 and Swagger 2.0 documents → registry operations (reference §6.3, fixed).

Pure functions, no I/O (the caller fetches the document and runs `parse_spec` in a thread:
multi-MB specs take a while). What changed from the original:

* Swagger 2.0 is read (body/formData parameters, host/basePath/schemes), and YAML as well as JSON.
* Local `$ref`s (`#/...`) are resolved everywhere (parameters, request bodies, responses,
  schemas); a cyclic reference is left as `{"$ref": ...}` where the cycle closes. External
  references (other files, URLs) are never fetched.
* Operation ids are unique: missing operationIds are generated from method and path as the
  original did, and a duplicate id gets `_2`, `_3`... in document order (stable for a given spec).
* The parsed server URL is kept, relative server URLs are resolved against the spec URL, and
  a server override that is a bare origin keeps the spec server's path (`/v1` is no longer lost).
* The security scheme is mapped to an auth config (type, apiKey location and name) and stored.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import orjson
import yaml

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.registry.namespace import build_namespace, dotted_id

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_JSON_TYPES = ("application/json",)
_BODY_PREFERENCE = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain",
                    "application/octet-stream")
# Bounds against hostile documents: alias bombs in YAML, reference blow-up.
_MAX_YAML_ALIASES = 1000
_MAX_REF_DEPTH = 64
_MAX_RESOLVED_NODES = 2_000_000


class SpecError(ValueError):
    pass


def invalid_spec(message: str) -> GatewayError:
    return GatewayError(f"Invalid OpenAPI document: {message}", ErrorCategory.validation, reason=Reason.SPEC_INVALID)


# --- loading -------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """safe_load that refuses documents with more aliases than any real spec uses."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > _MAX_YAML_ALIASES:
                raise SpecError("too many YAML aliases")
        return super().compose_node(parent, index)


# YAML 1.1 reads unquoted 2023-01-01 as a date and `on` as a boolean; JSON has neither, so keep
# timestamps as strings (schemas carry example dates).
_BoundedLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_document(raw: bytes | str, content_type: str = "", url: str = "") -> dict[str, Any]:
    """JSON or YAML text → the document object."""
    text = raw.decode("utf-8-sig", "replace") if isinstance(raw, bytes) else raw
    path = urlsplit(url).path.lower() if url else ""
    looks_yaml = "yaml" in content_type or path.endswith((".yaml", ".yml"))
    doc: Any = None
    if not looks_yaml:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
    if doc is None:
        try:
            doc = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass
        except SpecError:
            raise
        except yaml.YAMLError as exc:
            raise SpecError(f"neither JSON nor YAML ({str(exc).splitlines()[0]})") from None
        doc = _json_keys(doc, [0])   # YAML reads `200:` as an integer key; JSON (and OpenAPI) means "200"
    if not isinstance(doc, dict):
        raise SpecError("the document is not an object")
    return doc


def _json_keys(node: Any, count: list[int]) -> Any:
    """A copy with string keys. Aliases are expanded here, so the copy is bounded: an alias
    bomb (a few aliases that double the tree at every level) stops at the node budget."""
    count[0] += 1
    if count[0] > _MAX_RESOLVED_NODES:
        raise SpecError("the YAML document is too large once its aliases are expanded")
    if isinstance(node, dict):
        return {k if isinstance(k, str) else str(k): _json_keys(v, count) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_keys(v, count) for v in node]
    return node


def spec_version(doc: dict[str, Any]) -> str:
    if str(doc.get("swagger", "")).startswith("2"):
        return "2.0"
    version = str(doc.get("openapi", ""))
    if version.startswith("3."):
        return version
    raise SpecError("not an OpenAPI 3.x or Swagger 2.0 document (no `openapi: 3.x` or `swagger: \"2.0\"`)")


# --- $ref resolution ------------------------------------------------------------------------------


class Resolver:
    """Resolves local JSON-pointer references. Each reference is resolved once and shared;
    a reference that refers back to itself (directly or not) stays a `$ref` at the point
    where the cycle closes, so the result is finite."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._done: dict[str, Any] = {}
        self._active: list[str] = []
        self._nodes = 0

    def target(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return None  # external: never fetched
        node: Any = self.doc
        for token in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else ():
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def resolve(self, node: Any) -> Any:
        self._nodes += 1
        if self._nodes > _MAX_RESOLVED_NODES:
            raise SpecError("the document is too large once its references are resolved")
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            resolved = self._ref(ref)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(resolved, dict):  # 3.1 allows keywords beside $ref
                return {**resolved, **{k: self.resolve(v) for k, v in siblings.items()}}
            return resolved
        return {k: self.resolve(v) for k, v in node.items()}

    def _ref(self, ref: str) -> Any:
        if ref in self._done:
            return self._done[ref]
        if ref in self._active or len(self._active) >= _MAX_REF_DEPTH:
            return {"$ref": ref}
        target = self.target(ref)
        if target is None:
            return {"$ref": ref}
        self._active.append(ref)
        try:
            resolved = self.resolve(target)
        finally:
            self._active.pop()
        self._done[ref] = resolved
        return resolved


# --- servers, security ----------------------------------------------------------------------------


def _substitute_variables(url: str, variables: dict[str, Any] | None) -> str:
    for name, var in (variables or {}).items():
        if isinstance(var, dict) and "default" in var:
            url = url.replace("{" + name + "}", str(var["default"]))
    return url


def _spec_server(doc: dict[str, Any], version: str, spec_url: str | None) -> str | None:
    if version == "2.0":
        parsed = urlsplit(spec_url or "")
        host = doc.get("host") or parsed.netloc
        if not host:
            return None
        schemes = doc.get("schemes") or [parsed.scheme or "https"]
        scheme = "https" if "https" in schemes else schemes[0]
        return f"{scheme}://{host}{doc.get('basePath') or ''}".rstrip("/")
    servers = doc.get("servers") or [{"url": "/"}]  # OAS 3: no servers means "/" of the document
    first = servers[0] if isinstance(servers[0], dict) else {}
    url = _substitute_variables(str(first.get("url") or "/"), first.get("variables"))
    if not urlsplit(url).scheme:
        if not spec_url:
            return None
        url = urljoin(spec_url, url)
    return url.rstrip("/")


def server_url(doc: dict[str, Any], version: str, spec_url: str | None, override: str | None) -> str | None:
    """The base URL of the operations. An override with a path is used as given; a bare origin
    replaces the spec server's origin and keeps its path (https://api.openai.com + the spec's
    https://api.openai.com/v1 → https://api.openai.com/v1)."""
    parsed = _spec_server(doc, version, spec_url)
    if not override:
        return parsed
    over = urlsplit(override)
    if over.path or not parsed:  # a path (even "/") means "exactly this"
        return override.rstrip("/")
    return urlunsplit((over.scheme, over.netloc, urlsplit(parsed).path, "", "")).rstrip("/")


def auth_from_security(doc: dict[str, Any], version: str) -> dict[str, Any]:
    schemes = (doc.get("securityDefinitions") if version == "2.0"
               else (doc.get("components") or {}).get("securitySchemes")) or {}
    if not isinstance(schemes, dict) or not schemes:
        return {"type": "none"}
    name = None
    for requirement in doc.get("security") or []:
        if isinstance(requirement, dict) and requirement:
            name = next(iter(requirement))
            break
    scheme = schemes.get(name) if name else next(iter(schemes.values()))
    if not isinstance(scheme, dict):
        return {"type": "none"}
    kind = scheme.get("type")
    if kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
        return {"type": "bearer"}
    if (kind == "http" and str(scheme.get("scheme", "")).lower() == "basic") or kind == "basic":
        return {"type": "basic"}
    if kind == "apiKey":
        return {"type": "apiKey", "in": scheme.get("in") or "header", "name": scheme.get("name") or "X-API-Key"}
    if kind in ("oauth2", "openIdConnect"):
        return {"type": "oauth2"}
    return {"type": "none"}


# --- operations -----------------------------------------------------------------------------------


def generated_operation_id(method: str, path: str) -> str:
    """The original's rule: `GET /v1/users/{id}/posts` → `users_posts_get`."""
    p = re.sub(r"^/v\d+/", "/", path)
    p = re.sub(r"\{[^}]*\}", "", p)
    p = re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_")
    return f"{p}_{method.lower()}" if p else method.lower()


def _swagger2_schema(param: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "format", "items", "enum", "default", "minimum", "maximum", "pattern", "maxLength",
            "minLength", "collectionFormat")
    return {k: param[k] for k in keys if k in param}


def _pick_content(content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(content, dict) or not content:
        return None
    for ctype in content:
        if ctype.split(";")[0].strip().lower() in _JSON_TYPES:
            return ctype, content[ctype]
    for ctype in content:
        if ctype.split(";")[0].strip().lower().endswith("+json"):
            return ctype, content[ctype]
    for preferred in _BODY_PREFERENCE:
        for ctype in content:
            if ctype.split(";")[0].strip().lower() == preferred:
                return ctype, content[ctype]
    ctype = next(iter(content))
    return ctype, content[ctype]


def _response_schema(responses: Any, version: str) -> dict[str, Any] | None:
    if not isinstance(responses, dict):
        return None
    codes = [c for c in ("200", "201") if c in responses] or sorted(str(c) for c in responses if str(c).startswith("2"))
    for code in codes:
        response = responses.get(code) if code in responses else responses.get(int(code))
        if not isinstance(response, dict):
            continue
        if version == "2.0":
            if isinstance(response.get("schema"), dict):
                return response["schema"]
            continue
        picked = _pick_content(response.get("content") or {})
        if picked and isinstance(picked[1], dict) and isinstance(picked[1].get("schema"), dict):
            return picked[1]["schema"]
    return None


def _parameters(path_item: dict[str, Any], op: dict[str, Any], version: str,
                consumes: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for param in [*(path_item.get("parameters") or []), *(op.get("parameters") or [])]:
        if isinstance(param, dict) and param.get("name") and param.get("in"):
            merged[(param["name"], param["in"])] = param
    params: list[dict[str, Any]] = []
    body: dict[str, Any] | None = None
    form: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    has_file = False
    for (name, location), param in merged.items():
        if version == "2.0" and location == "body":
            body = {"required": bool(param.get("required")), "contentType": _json_or_first(consumes),
                    "schema": param.get("schema") or {}}
            continue
        if version == "2.0" and location == "formData":
            form["properties"][name] = {**_swagger2_schema(param), "description": param.get("description")}
            has_file |= param.get("type") == "file"
            if param.get("required"):
                form["required"].append(name)
            continue
        if location not in ("path", "query", "header", "cookie"):
            continue
        schema = param.get("schema")
        if version == "2.0":
            schema = _swagger2_schema(param)
        elif schema is None and isinstance(param.get("content"), dict):
            picked = _pick_content(param["content"])
            schema = picked[1].get("schema") if picked and isinstance(picked[1], dict) else None
        entry = {"name": name, "location": location, "required": bool(param.get("required")) or location == "path",
                 "description": param.get("description"), "schema": schema}
        for extra in ("style", "explode", "deprecated"):
            if extra in param:
                entry[extra] = param[extra]
        params.append({k: v for k, v in entry.items() if v is not None})
    if form["properties"]:
        ctype = "multipart/form-data" if has_file or "multipart/form-data" in consumes \
            else "application/x-www-form-urlencoded"
        body = {"required": bool(form["required"]), "contentType": ctype, "schema": form}
    return params, body


def _json_or_first(consumes: list[str]) -> str:
    for ctype in consumes:
        if "json" in ctype:
            return ctype
    return consumes[0] if consumes else "application/json"


def _request_body(op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    if not isinstance(body, dict):
        return None
    picked = _pick_content(body.get("content") or {})
    if picked is None:
        return {"required": bool(body.get("required")), "contentType": "application/json", "schema": {}}
    ctype, media = picked
    return {"required": bool(body.get("required")), "contentType": ctype,
            "schema": media.get("schema") if isinstance(media, dict) else None}


@dataclass(slots=True)
class ParsedSpec:
    operations: list[dict[str, Any]]
    namespace: dict[str, Any]
    server_url: str | None
    info: dict[str, Any]
    auth: dict[str, Any]
    version: str


def parse_spec(doc: dict[str, Any], *, spec_url: str | None = None, server_override: str | None = None,
               id_prefix: str | None = None, extra_tags: tuple[str, ...] = (),
               exclude: Callable[[str], bool] | None = None) -> ParsedSpec:
    """Every operation of the document, in document order. `id_prefix` and `extra_tags` serve
    the internal services (`identity.auth.introspect.post`, tags + internal, symbia); `exclude`
    drops operations by operationId."""
    version = spec_version(doc)
    resolver = Resolver(doc)
    consumes_default = doc.get("consumes") or []
    paths = doc.get("paths") or {}
    if not isinstance(paths, dict):
        raise SpecError("`paths` is not an object")
    operations: list[dict[str, Any]] = []
    seen_op_ids: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for path, raw_item in paths.items():
        item = resolver.resolve(raw_item) if isinstance(raw_item, dict) else None
        if not isinstance(item, dict) or not isinstance(path, str):
            continue
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            operation_id = str(op.get("operationId") or generated_operation_id(method, path))
            if exclude and exclude(operation_id):
                continue
            operation_id = _unique(operation_id, seen_op_ids, "_")
            op_id = _unique(dotted_id(operation_id), seen_ids, "_")
            if id_prefix:
                op_id = f"{id_prefix}.{op_id}"
            params, body = _parameters(item, op, version, op.get("consumes") or consumes_default)
            if version != "2.0":
                body = _request_body(op)
            entry: dict[str, Any] = {
                "id": op_id,
                "operationId": operation_id,
                "method": method.upper(),
                "path": path,
                "summary": op.get("summary"),
                "description": op.get("description"),
                "tags": [*[str(t) for t in op.get("tags") or []], *extra_tags],
                "parameters": params,
                "requestBody": body,
                "responseSchema": _response_schema(op.get("responses"), version),
            }
            if op.get("deprecated"):
                entry["deprecated"] = True
            operations.append({k: v for k, v in entry.items() if v is not None})
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    return ParsedSpec(
        operations=operations,
        namespace=build_namespace(operations),
        server_url=server_url(doc, version, spec_url, server_override),
        info={k: info.get(k) for k in ("title", "version", "description")},
        auth=auth_from_security(doc, version),
        version=version,
    )


def _unique(value: str, seen: dict[str, int], sep: str) -> str:
    count = seen.get(value, 0) + 1
    seen[value] = count
    if count == 1:
        return value
    candidate = f"{value}{sep}{count}"
    while candidate in seen:
        count += 1
        candidate = f"{value}{sep}{count}"
    seen[candidate] = 1
    return candidate
