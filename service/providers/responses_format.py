"""The OpenAI Responses API (`POST /v1/responses`), current public shapes: `input` items,
flat function tools, `text.format`, `reasoning.summary`, `function_call` output items and
`output_tokens_details` usage."""

from typing import Any

from contracts.execute import ExecuteParams
from service.providers import chat_format


def _input(params: ExecuteParams) -> Any:
    if params.input is not None:
        return params.input
    if not params.messages:
        return params.prompt or ""
    items: list[dict[str, Any]] = []
    for m in params.messages:
        if m.role == "tool":
            items.append({"type": "function_call_output", "call_id": m.tool_call_id or "",
                          "output": m.content if isinstance(m.content, str) else chat_format.to_json(m.content)})
            continue
        if m.content is not None:
            items.append({"role": m.role, "content": _parts(m.role, m.content)})
        for call in m.tool_calls or []:
            fn = call.get("function") or {}
            items.append({"type": "function_call", "call_id": call.get("id", ""), "name": fn.get("name", ""),
                          "arguments": fn.get("arguments", "{}")})
    return items


def _parts(role: str, content: Any) -> Any:
    """Chat-style content parts in Responses input shapes: text → input_text (output_text for
    the assistant), image_url → input_image. Parts already in Responses shapes pass through."""
    if not isinstance(content, list):
        return content
    text_type = "output_text" if role == "assistant" else "input_text"
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"type": text_type, "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            converted = {"type": "input_image", "image_url": url}
            if isinstance(image, dict) and image.get("detail"):
                converted["detail"] = image["detail"]
            out.append(converted)
        else:
            out.append(part)
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        return {"type": "function", **tool["function"]}
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def _text_format(params: ExecuteParams) -> dict[str, Any] | None:
    fmt = chat_format.response_format(params)
    if fmt is None:
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return {"type": "json_schema", **fmt["json_schema"]}
    return fmt


def body(params: ExecuteParams) -> dict[str, Any]:
    out: dict[str, Any] = {"model": params.model, "input": _input(params)}
    instructions = chat_format.system_prompt(params)
    if instructions:
        out["instructions"] = instructions
    if params.temperature is not None:
        out["temperature"] = params.temperature
    if params.topP is not None:
        out["top_p"] = params.topP
    if params.maxTokens is not None:
        out["max_output_tokens"] = params.maxTokens
    if params.tools:
        out["tools"] = [_tool(t) for t in chat_format.function_tools(params.tools)]
    if params.toolChoice is not None:
        out["tool_choice"] = _tool_choice(params.toolChoice)
    if params.previousResponseId:
        out["previous_response_id"] = params.previousResponseId
    if params.parallelToolCalls is not None:
        out["parallel_tool_calls"] = params.parallelToolCalls
    reasoning = {}
    if params.reasoningEffort is not None:
        reasoning["effort"] = params.reasoningEffort
    if params.showReasoning:
        reasoning["summary"] = "auto"
    if reasoning:
        out["reasoning"] = reasoning
    fmt = _text_format(params)
    if fmt is not None:
        out["text"] = {"format": fmt}
    if params.user is not None:
        out["user"] = params.user
    return out


def _finish(payload: dict[str, Any], has_tool_calls: bool) -> str:
    status = payload.get("status")
    if status == "completed":
        return "tool_calls" if has_tool_calls else "stop"
    if status == "incomplete":
        reason = (payload.get("incomplete_details") or {}).get("reason")
        return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(reason, "incomplete")
    return "error"


def parse(provider: str, requested_model: str, payload: dict[str, Any]) -> dict[str, Any]:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in payload.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            texts.extend(p.get("text", "") for p in item.get("content") or [] if p.get("type") == "output_text")
        elif kind == "function_call":
            calls.append({"id": item.get("call_id") or item.get("id") or "", "type": "function",
                          "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"}})
        elif kind == "reasoning":
            reasoning.extend(s.get("text", "") for s in item.get("summary") or [])
    usage = payload.get("usage") or {}
    data: dict[str, Any] = {
        "provider": provider,
        "model": payload.get("model") or requested_model,
        "content": "\n".join(texts),
        "usage": {
            "promptTokens": chat_format.as_int(usage.get("input_tokens")),
            "completionTokens": chat_format.as_int(usage.get("output_tokens")),
            "totalTokens": chat_format.as_int(usage.get("total_tokens")),
        },
        "finishReason": _finish(payload, bool(calls)),
    }
    if calls:
        data["toolCalls"] = calls
    metadata = {
        "id": payload.get("id"),
        "responseId": payload.get("id"),
        "createdAt": payload.get("created_at"),
        "status": payload.get("status"),
        "reasoning": "\n".join(reasoning) or None,
        "reasoningTokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
        "cachedTokens": (usage.get("input_tokens_details") or {}).get("cached_tokens"),
    }
    data["metadata"] = {k: v for k, v in metadata.items() if v is not None}
    return data
