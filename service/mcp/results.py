"""Invoke results → MCP `CallToolResult` objects: the one place that decides what a tool call
returns (the spec's result shape is expected to change; keep the mapping here).

* provider built-ins: the reply text as a text block, the normalized execute data as
  `structuredContent`;
* OpenAPI operations: JSON as `structuredContent` (an object as is, anything else wrapped
  `{"result": ...}`, always when the tool's outputSchema is wrapped) plus the same JSON as text;
  text bodies as text; binary bodies as image, audio or embedded resource blocks. A non-2xx
  answer is `isError: true` with the status line and the body. A body that does not match the
  tool's advertised outputSchema is `isError: true` too (the spec forbids a non-conforming
  `structuredContent`), with the body as text;
* MCP tools: the upstream result as it came (content, structuredContent, isError); resources as
  embedded resources; prompts as their messages.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.invoke.service import InvokeResult
from service.mcp.toolset import Tool

_MAX_ERROR_BODY = 4000


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _json_text(data: Any) -> str:
    return data if isinstance(data, str) else orjson.dumps(data).decode()


def _error(message: str) -> dict[str, Any]:
    return {"content": [_text(message)], "isError": True}


def tool_result(tool: Tool, result: InvokeResult) -> dict[str, Any]:
    if result.type == "llm":
        return _llm(result.data)
    if result.type == "mcp-tool":
        return _mcp_tool(tool, result.data)
    if result.type == "mcp-resource":
        contents = (result.data or {}).get("contents") or []
        return {"content": [{"type": "resource", "resource": c} for c in contents], "isError": False}
    if result.type == "mcp-prompt":
        return _prompt(result.data or {})
    return _http(tool, result)


def _llm(data: Any) -> dict[str, Any]:
    content = data.get("content") if isinstance(data, dict) else None
    text = content if isinstance(content, str) and content else _json_text(data)
    out: dict[str, Any] = {"content": [_text(text)], "isError": False}
    if isinstance(data, dict):
        out["structuredContent"] = data
    return out


def _mcp_tool(tool: Tool, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"content": data.get("content") or [], "isError": bool(data.get("isError"))}
    if "structuredContent" in data and data["structuredContent"] is not None:
        structured = data["structuredContent"]
        out["structuredContent"] = {"result": structured} if tool.output_wrapped else structured
    return out


def _prompt(data: dict[str, Any]) -> dict[str, Any]:
    blocks = []
    for message in data.get("messages") or []:
        content = message.get("content") or {}
        if content.get("type") == "text":
            blocks.append(_text(f"{message.get('role', 'user')}: {content.get('text', '')}"))
        elif content:
            blocks.append(content)
    if data.get("description"):
        blocks.insert(0, _text(str(data["description"])))
    return {"content": blocks or [_text("")], "structuredContent": data, "isError": False}


def _binary(tool: Tool, result: InvokeResult) -> dict[str, Any]:
    mime = (result.content_type or "application/octet-stream").split(";", 1)[0].strip()
    if mime.startswith("image/"):
        block: dict[str, Any] = {"type": "image", "data": result.data, "mimeType": mime}
    elif mime.startswith("audio/"):
        block = {"type": "audio", "data": result.data, "mimeType": mime}
    else:
        block = {"type": "resource", "resource": {"uri": f"urn:symbia:integrations:{tool.key}:{tool.operation}",
                                                  "mimeType": mime, "blob": result.data}}
    return {"content": [block], "isError": False}


def _http(tool: Tool, result: InvokeResult) -> dict[str, Any]:
    data = result.data
    if not result.success:
        body = "" if data is None else _json_text(data)
        if len(body) > _MAX_ERROR_BODY:
            body = body[:_MAX_ERROR_BODY] + f"… ({len(body) - _MAX_ERROR_BODY} more characters)"
        return _error(f"{result.error or 'The upstream call failed'}\n{body}".strip())
    if result.encoding == "base64":
        return _binary(tool, result)
    is_json = "json" in (result.content_type or "") or (data is not None and not isinstance(data, str))
    text = "" if data is None else _json_text(data)
    if "outputSchema" in tool.wire:
        structured = {"result": data} if tool.output_wrapped else data
        problem = _schema_problem(tool, structured)
        if problem:
            return _error(f"The response of {tool.path} does not match its documented response schema ({problem}). "
                          f"Response:\n{text}")
        return {"content": [_text(text)], "structuredContent": structured, "isError": False}
    out: dict[str, Any] = {"content": [_text(text)], "isError": False}
    if is_json and data is not None:
        out["structuredContent"] = data if isinstance(data, dict) else {"result": data}
    return out


def _schema_problem(tool: Tool, value: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(tool.validator("output").iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where or 'the response'}: {error.message[:300]}"
