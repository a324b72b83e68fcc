"""The Anthropic Messages API wire format (reference §3.5.4, with its defects fixed).

Requests: OpenAI-style chat messages become Messages API turns. Content is converted part by
part and never stringified: OpenAI parts (`text`, `image_url` with a data: or http(s) URL,
`input_image`, `file` with a PDF data URL) become native blocks, native Anthropic blocks
(`text`, `image`, `document`, `tool_use`, `tool_result`, `thinking`...) pass through unchanged,
assistant `tool_calls` become `tool_use` blocks and `tool` messages become `tool_result` blocks
in the next user turn. System and developer messages and the `system` / `systemPrompt` /
`instructions` parameters all go to the top-level `system`. Anything Anthropic cannot take is
a `ConversionError` naming it (the adapter turns it into a 400).

Responses: text blocks → `content`, `tool_use` blocks → `toolCalls`, `thinking` blocks →
`metadata.reasoning`, `stop_reason` → `finishReason`. Streams (`AnthropicStreamDecoder`) decode
to the same normalized answer.
"""

import re
from typing import Any

import orjson

from contracts.execute import ChatMessage, ExecuteParams
from service.providers import chat_format
from service.providers.base import StreamChunk
from service.providers.errors import stream_event_object, stream_failure


class ConversionError(ValueError):
    """The request cannot be expressed in the Messages API."""


_DATA_URL = re.compile(r"^data:(?P<media>[^;,]*)(?P<params>(;[^;,]*)*?),(?P<data>.*)$", re.DOTALL)
# Blocks that already are Messages API content; they are passed through as given.
_NATIVE_BLOCKS = {
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result",
    "server_tool_use", "web_search_tool_result", "container_upload",
}
_STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
    "refusal": "content_filter", "pause_turn": "incomplete", "model_context_window_exceeded": "length",
}


# --- content ----------------------------------------------------------------------------------


def _source_from_url(url: Any, where: str, default_media: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise ConversionError(f"{where} has no URL")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or ";base64" not in match["params"]:
            raise ConversionError(f"{where} must be a base64 data URL (data:<type>;base64,<data>)")
        return {"type": "base64", "media_type": match["media"] or default_media, "data": match["data"]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise ConversionError(f"{where} must be a data: URL or an http(s) URL")


def _block(part: Any, where: str) -> dict[str, Any]:
    """One OpenAI content part or native block → one Messages API block."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise ConversionError(f"{where} must be a string or an object")
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "image", "source": _source_from_url(url, where, "image/jpeg")}
    if kind == "input_text":
        return {"type": "text", "text": part.get("text", "")}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal", "")}
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), dict) else {}
        if "file_data" not in file:
            raise ConversionError(f"{where}: anthropic takes files as data URLs (file.file_data), not file ids")
        block: dict[str, Any] = {"type": "document",
                                 "source": _source_from_url(file["file_data"], where, "application/pdf")}
        if file.get("filename"):
            block["title"] = file["filename"]
        return block
    if kind in _NATIVE_BLOCKS:
        return dict(part)
    raise ConversionError(f"{where}: content part type {kind!r} is not supported by anthropic")


def _blocks(content: list[Any], where: str) -> list[dict[str, Any]]:
    return [_block(part, f"{where}[{i}]") for i, part in enumerate(content)]


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise ConversionError(f"{where} must be {{id, type: function, function: {{name, arguments}}}}")
    fn = call["function"]
    arguments = fn.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            raise ConversionError(f"{where}.function.arguments is not valid JSON") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ConversionError(f"{where}.function.arguments must be a JSON object")
    if not call.get("id") or not fn.get("name"):
        raise ConversionError(f"{where} needs an id and a function name")
    return {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": arguments}


def _assistant(m: ChatMessage, where: str) -> str | list[dict[str, Any]]:
    if not m.tool_calls:
        if m.content is None:
            raise ConversionError(f"{where}.content is required")
        return m.content if isinstance(m.content, str) else _blocks(m.content, f"{where}.content")
    # OpenAI clients send "" or null beside tool calls; an empty text block is an error there.
    blocks = _as_blocks(m.content) if isinstance(m.content, str) else _blocks(m.content or [], f"{where}.content")
    blocks = [b for b in blocks if not (b.get("type") == "text" and not b.get("text"))]
    blocks.extend(_tool_use(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(m.tool_calls))
    return blocks


def _tool_result(m: ChatMessage, where: str) -> dict[str, Any]:
    if not m.tool_call_id:
        raise ConversionError(f"{where}.tool_call_id is required for a tool message")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
    if isinstance(m.content, str):
        block["content"] = m.content
    elif m.content:
        block["content"] = _blocks(m.content, f"{where}.content")
    if (m.model_extra or {}).get("is_error") is True:
        block["is_error"] = True
    return block


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content and content.strip() else []
    blocks = _blocks(content, where)
    for i, block in enumerate(blocks):
        if block["type"] != "text":
            raise ConversionError(f"{where}[{i}]: system content can only be text for anthropic")
    return [b for b in blocks if b.get("text", "").strip()]


def _append(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Consecutive turns of one role become one turn (tool results followed by the user's text,
    several tool results for one assistant turn), as the Messages API expects."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def convert_messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, turns) from OpenAI-style messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role in ("system", "developer"):
            system.extend(_system_blocks(m.content, f"{where}.content"))
        elif m.role == "tool":
            _append(turns, "user", [_tool_result(m, where)])
        elif m.role == "assistant":
            _append(turns, "assistant", _assistant(m, where))
        else:
            if m.content is None:
                raise ConversionError(f"{where}.content is required")
            content = m.content if isinstance(m.content, str) else _blocks(m.content, f"{where}.content")
            _append(turns, "user", content)
    return system, turns


def _system(params: ExecuteParams, from_messages: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    blocks = [*_system_blocks(chat_format.system_prompt(params), "system"), *from_messages]
    if not blocks:
        return None
    if all(set(b) == {"type", "text"} for b in blocks):
        return "\n\n".join(b["text"] for b in blocks)
    return blocks  # keeps cache_control and other block options


# --- tools ------------------------------------------------------------------------------------


def _tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        fn = tool["function"]
        if not fn.get("name"):
            raise ConversionError(f"{where}.function.name is required")
        out: dict[str, Any] = {"name": fn["name"],
                               "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            out["description"] = fn["description"]
        return out
    if tool.get("name"):
        return dict(tool)  # an Anthropic client tool, or a server tool with its own `type`
    raise ConversionError(f"{where} is neither an OpenAI function tool nor an Anthropic tool")


def _tool_choice(choice: Any, parallel: bool | None, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        mapped = None
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif choice in ("required", "any"):
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if not name:
            raise ConversionError("toolChoice.function.name is required")
        mapped = {"type": "tool", "name": name}
    elif isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"):
        mapped = dict(choice)
    else:
        raise ConversionError("toolChoice must be auto, none, required, {type: function, function: {name}} "
                              "or an Anthropic tool_choice")
    if not has_tools:
        if mapped is not None and mapped["type"] != "none":
            raise ConversionError("toolChoice needs tools")
        return None
    if parallel is False:
        mapped = mapped or {"type": "auto"}
        if mapped["type"] != "none":
            mapped["disable_parallel_tool_use"] = True
    return mapped


# --- request and response ---------------------------------------------------------------------


def body(params: ExecuteParams, *, max_tokens: int) -> dict[str, Any]:
    system_blocks, turns = convert_messages(params.messages or [])
    if not turns:
        if params.prompt is None:
            raise ConversionError("messages need at least one user or assistant message (or give prompt)")
        turns = [{"role": "user", "content": params.prompt}]
    out: dict[str, Any] = {"model": params.model, "messages": turns, "max_tokens": max_tokens}
    system = _system(params, system_blocks)
    if system is not None:
        out["system"] = system
    optional = {"temperature": params.temperature, "top_p": params.topP, "top_k": params.topK,
                "stop_sequences": chat_format.stop_list(params)}
    out.update({k: v for k, v in optional.items() if v is not None})
    if params.tools:
        out["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(params.tools)]
    choice = _tool_choice(params.toolChoice, params.parallelToolCalls, bool(params.tools))
    if choice is not None:
        out["tool_choice"] = choice
    if params.user is not None:
        out["metadata"] = {"user_id": params.user}
    return out


def finish_reason(stop_reason: Any) -> str:
    mapped = _STOP_REASONS.get(str(stop_reason)) if stop_reason else None
    return mapped or chat_format.finish_reason(stop_reason)


def parse(provider: str, requested_model: str, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("content"), list):
        raise ValueError("not a Messages API response (no content list)")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in payload["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id") or "", "type": "function",
                          "function": {"name": block.get("name") or "",
                                       "arguments": chat_format.to_json(block.get("input") or {})}})
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
    usage = payload.get("usage") or {}
    cache_read = chat_format.as_int(usage.get("cache_read_input_tokens"))
    cache_write = chat_format.as_int(usage.get("cache_creation_input_tokens"))
    # input_tokens excludes cached tokens; the prompt was all three.
    prompt = chat_format.as_int(usage.get("input_tokens")) + cache_read + cache_write
    completion = chat_format.as_int(usage.get("output_tokens"))
    data: dict[str, Any] = {
        "provider": provider,
        "model": payload.get("model") or requested_model,
        "content": "\n".join(texts),
        "usage": {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion},
        "finishReason": finish_reason(payload.get("stop_reason")),
    }
    if calls:
        data["toolCalls"] = calls
    extra = {"reasoning": "\n".join(thinking) or None, "cachedTokens": cache_read or None,
             "cacheCreationTokens": cache_write or None}
    data["metadata"] = {"id": payload.get("id"), "stopSequence": payload.get("stop_sequence"),
                        **{k: v for k, v in extra.items() if v is not None}}
    return data


# --- streaming: Messages API events ------------------------------------------------------------


class AnthropicStreamDecoder:
    """The Messages API stream: `message_start` (id, model, prompt tokens), per content block
    `content_block_start` / `content_block_delta` (text_delta, thinking_delta, input_json_delta) /
    `content_block_stop`, then `message_delta` (stop_reason, cumulative output_tokens) and
    `message_stop`; `ping` is skipped and an `error` event raises. Deltas come out as they would
    from `parse`: text blocks joined by a newline, tool_use blocks as OpenAI tool-call fragments
    numbered in order, thinking as reasoning."""

    def __init__(self, provider: str, operation: str) -> None:
        self._provider = provider
        self._operation = operation
        self._tool_slots: dict[int, int] = {}    # content block index → tool call index
        self._started: set[str] = set()          # block types seen (the second text block needs a separator)
        self._cache: tuple[int, int] = (0, 0)

    def _prompt(self, usage: dict[str, Any]) -> int:
        cache_read, cache_write = self._cache
        return chat_format.as_int(usage.get("input_tokens")) + cache_read + cache_write

    def decode(self, event: str | None, data: str) -> StreamChunk | None:
        payload = stream_event_object(self._provider, self._operation, data)
        kind = payload.get("type") or event
        if kind == "error":
            raise stream_failure(self._provider, self._operation, payload)
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "message_start":
            message = payload.get("message") or {}
            usage = message.get("usage") or {}
            self._cache = (chat_format.as_int(usage.get("cache_read_input_tokens")),
                           chat_format.as_int(usage.get("cache_creation_input_tokens")))
            extra = {"id": message.get("id"), "cachedTokens": self._cache[0] or None,
                     "cacheCreationTokens": self._cache[1] or None}
            # output_tokens here is a placeholder; the count comes with message_delta.
            return StreamChunk(model=message.get("model") or None, usage={"promptTokens": self._prompt(usage)},
                               metadata={k: v for k, v in extra.items() if v is not None})
        if kind == "message_delta":
            delta = payload.get("delta") or {}
            usage = payload.get("usage") or {}
            chunk = StreamChunk(finish_reason=finish_reason(delta["stop_reason"]) if delta.get("stop_reason")
                                else None)
            counts: dict[str, int] = {}
            if usage.get("output_tokens") is not None:
                counts["completionTokens"] = chat_format.as_int(usage.get("output_tokens"))
            if usage.get("input_tokens") is not None:
                counts["promptTokens"] = self._prompt(usage)
            chunk.usage = counts or None
            if delta.get("stop_sequence"):
                chunk.metadata = {"stopSequence": delta["stop_sequence"]}
            return chunk
        if kind == "message_stop":
            return StreamChunk(done=True)
        return None                               # ping, content_block_stop, future event types

    def _block_start(self, payload: dict[str, Any]) -> StreamChunk | None:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        separator = "\n" if kind in self._started else ""
        self._started.add(kind)
        if kind == "tool_use":
            slot = self._tool_slots[payload.get("index", 0)] = len(self._tool_slots)
            return StreamChunk(tool_calls=[{"index": slot, "id": block.get("id") or "", "type": "function",
                                            "function": {"name": block.get("name") or "", "arguments": ""}}])
        if kind == "text":
            text = separator + (block.get("text") or "")
            return StreamChunk(content=text) if text else None
        if kind == "thinking":
            text = separator + (block.get("thinking") or "")
            return StreamChunk(reasoning=text) if text else None
        return None

    def _delta(self, payload: dict[str, Any]) -> StreamChunk | None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return StreamChunk(content=delta.get("text") or None)
        if kind == "thinking_delta":
            return StreamChunk(reasoning=delta.get("thinking") or None)
        if kind == "input_json_delta" and delta.get("partial_json"):
            slot = self._tool_slots.get(payload.get("index", 0), max(len(self._tool_slots) - 1, 0))
            return StreamChunk(tool_calls=[{"index": slot, "function": {"arguments": delta["partial_json"]}}])
        return None                               # signature_delta, citations_delta
