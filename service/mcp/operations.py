"""MCP listings → registry operations (reference §7.4, kept compatible).

A tool becomes `tool.<name>`, a resource or resource template `resource.<name>`, a prompt
`prompt.<name>`. The namespace tree files tools under their name with `_` read as a dot
(`read_file` → `read.file`, as the original) and resources and prompts under `resource.` and
`prompt.`. The upstream name is kept in `mcpTool` / `mcpResource` / `mcpPrompt` and used for
the call: invoke never parses names back.
"""

import re
from typing import Any

from service.registry.namespace import build_namespace

_TEMPLATE_VAR = re.compile(r"\{([^}]+)\}")


def _dedupe(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    for op in ops:
        count = seen.get(op["id"], 0) + 1
        seen[op["id"]] = count
        if count > 1:
            op["id"] = f"{op['id']}_{count}"
    return ops


def tool_operation(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("inputSchema") or {"type": "object"}
    required = set(schema.get("required") or [])
    params = [{"name": name, "location": "body", "required": name in required,
               "description": (prop or {}).get("description"), "schema": prop}
              for name, prop in (schema.get("properties") or {}).items()]
    mcp_tool = {k: tool[k] for k in ("name", "title", "inputSchema", "outputSchema", "annotations") if tool.get(k)}
    description = tool.get("description")
    return {
        "id": f"tool.{tool['name']}",
        "operationId": tool["name"],
        "summary": (description or tool.get("title") or tool["name"]).split("\n", 1)[0][:300],
        "description": description,
        "tags": ["mcp", "tool"],
        "parameters": [{k: v for k, v in p.items() if v is not None} for p in params],
        "requestBody": {"required": bool(required), "contentType": "application/json", "schema": schema},
        "mcpTool": mcp_tool,
    }


def resource_operation(resource: dict[str, Any], template: bool) -> dict[str, Any]:
    uri = resource.get("uriTemplate") if template else resource.get("uri")
    if template:
        params = [{"name": var, "location": "path", "required": True, "schema": {"type": "string"}}
                  for var in _TEMPLATE_VAR.findall(uri or "")]
    else:
        params = [{"name": "uri", "location": "query", "required": False, "schema": {"type": "string", "default": uri}}]
    ref = {k: resource[k] for k in ("name", "uri", "uriTemplate", "mimeType", "title") if resource.get(k)}
    return {
        "id": f"resource.{resource['name']}",
        "operationId": resource["name"],
        "summary": resource.get("description") or resource.get("title") or resource["name"],
        "description": resource.get("description"),
        "tags": ["mcp", "resource"],
        "parameters": params,
        "mcpResource": ref,
    }


def prompt_operation(prompt: dict[str, Any]) -> dict[str, Any]:
    arguments = prompt.get("arguments") or []
    params = [{"name": a["name"], "location": "body", "required": bool(a.get("required")),
               "description": a.get("description"), "schema": {"type": "string"}} for a in arguments]
    return {
        "id": f"prompt.{prompt['name']}",
        "operationId": prompt["name"],
        "summary": prompt.get("description") or prompt.get("title") or prompt["name"],
        "description": prompt.get("description"),
        "tags": ["mcp", "prompt"],
        "parameters": [{k: v for k, v in p.items() if v is not None} for p in params],
        "mcpPrompt": {"name": prompt["name"], "arguments": arguments},
    }


def _namespace_path(op: dict[str, Any]) -> str:
    if "mcpTool" in op:
        return op["mcpTool"]["name"].replace("_", ".")
    return op["id"]


def operations_from_listing(tools: list[dict[str, Any]], resources: list[dict[str, Any]],
                            templates: list[dict[str, Any]], prompts: list[dict[str, Any]]
                            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ops = [tool_operation(t) for t in tools]
    ops += [resource_operation(r, template=False) for r in resources]
    ops += [resource_operation(r, template=True) for r in templates]
    ops += [prompt_operation(p) for p in prompts]
    ops = _dedupe(ops)
    return ops, build_namespace(ops, _namespace_path)
