"""The OpenAI chat-completions wire format, shared by every OpenAI-compatible upstream
(OpenAI, the HuggingFace router, TGI's Messages API, vLLM, llama.cpp, Ollama...)."""

from typing import Any

import orjson

from contracts.execute import ExecuteParams
from service.providers.base import StreamChunk
from service.providers.errors import stream_event_object, stream_failure

# Generic finish-reason mapping (reference §3.6).
_FINISH = {
    "stop": "stop", "end_turn": "stop", "eos_token": "stop", "stop_sequence": "stop",
    "length": "length", "max_tokens": "length",
    "content_filter": "content_filter", "safety": "content_filter",
    "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
    "incomplete": "incomplete",
}


def finish_reason(value: Any) -> str:
    if not value:
        return "stop"
    return _FINISH.get(str(value).lower(), "stop")


def system_prompt(params: ExecuteParams) -> str | None:
    return params.system or params.systemPrompt or params.instructions


def messages(params: ExecuteParams, *, developer_as_system: bool = False) -> list[dict[str, Any]]:
    if params.messages:
        out = [m.model_dump(exclude_none=True) for m in params.messages]
    else:
        out = [{"role": "user", "content": params.prompt or ""}]
    if developer_as_system:
        for m in out:
            if m["role"] == "developer":
                m["role"] = "system"
    system = system_prompt(params)
    if system:
        out.insert(0, {"role": "system", "content": system})
    return out


def function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools; Anthropic-shaped tools (`name`, `input_schema`) are converted."""
    out = []
    for tool in tools:
        if "type" not in tool and "name" in tool:
            tool = {"type": "function", "function": {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
            }}
        out.append(tool)
    return out


def response_format(params: ExecuteParams) -> dict[str, Any] | None:
    fmt = params.responseFormat
    if fmt is None:
        return {"type": "json_schema", "json_schema": _named_schema(params.jsonSchema)} if params.jsonSchema else None
    if isinstance(fmt, dict):
        return fmt
    if fmt in ("json", "json_object"):
        return {"type": "json_object"}
    if fmt == "json_schema":
        return {"type": "json_schema", "json_schema": _named_schema(params.jsonSchema or {})}
    return {"type": "text"}


def _named_schema(schema: dict[str, Any]) -> dict[str, Any]:
    if "schema" in schema:
        return {"name": "response", **schema}
    return {"name": "response", "schema": schema}


def stop_list(params: ExecuteParams) -> list[str] | None:
    stop = params.stopSequences if params.stopSequences is not None else params.stop
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def chat_body(params: ExecuteParams, *, max_tokens_field: str = "max_tokens",
              developer_as_system: bool = False) -> dict[str, Any]:
    """Explicit mapping, no injected defaults (no forced temperature or max_tokens)."""
    body: dict[str, Any] = {
        "model": params.model,
        "messages": messages(params, developer_as_system=developer_as_system),
    }
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.maxTokens is not None:
        body[max_tokens_field] = params.maxTokens
    if params.topP is not None:
        body["top_p"] = params.topP
    stop = stop_list(params)
    if stop is not None:
        body["stop"] = stop
    if params.seed is not None:
        body["seed"] = params.seed
    if params.frequencyPenalty is not None:
        body["frequency_penalty"] = params.frequencyPenalty
    if params.presencePenalty is not None:
        body["presence_penalty"] = params.presencePenalty
    if params.tools:
        body["tools"] = function_tools(params.tools)
    if params.toolChoice is not None:
        body["tool_choice"] = params.toolChoice
    fmt = response_format(params)
    if fmt is not None:
        body["response_format"] = fmt
    if params.reasoningEffort is not None:
        body["reasoning_effort"] = params.reasoningEffort
    if params.parallelToolCalls is not None:
        body["parallel_tool_calls"] = params.parallelToolCalls
    if params.user is not None:
        body["user"] = params.user
    return body


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def tool_calls(raw: Any) -> list[dict[str, Any]] | None:
    if not raw:
        return None
    calls = []
    for call in raw:
        fn = call.get("function") or {}
        args = fn.get("arguments", "{}")
        calls.append({
            "id": call.get("id") or "",
            "type": "function",
            "function": {"name": fn.get("name") or "", "arguments": args if isinstance(args, str) else to_json(args)},
        })
    return calls


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def parse_chat(provider: str, requested_model: str, payload: dict[str, Any]) -> dict[str, Any]:
    choices = payload.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    usage = payload.get("usage") or {}
    data: dict[str, Any] = {
        "provider": provider,
        "model": payload.get("model") or requested_model,
        "content": _text(message.get("content")),
        "usage": {
            "promptTokens": as_int(usage.get("prompt_tokens")),
            "completionTokens": as_int(usage.get("completion_tokens")),
            "totalTokens": as_int(usage.get("total_tokens")),
        },
        "finishReason": finish_reason(choice.get("finish_reason")),
    }
    calls = tool_calls(message.get("tool_calls"))
    if calls:
        data["toolCalls"] = calls
    metadata = {
        "id": payload.get("id"),
        "created": payload.get("created"),
        "systemFingerprint": payload.get("system_fingerprint"),
        "refusal": message.get("refusal"),
        "reasoningTokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
        "cachedTokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
    }
    data["metadata"] = {k: v for k, v in metadata.items() if v is not None}
    return data


def parse_embeddings(provider: str, requested_model: str, payload: Any) -> dict[str, Any]:
    """OpenAI `data[].embedding` (sorted by index), `{"embeddings": [...]}`, or TEI-style lists."""
    usage: dict[str, Any] = {}
    model = requested_model
    if isinstance(payload, dict):
        usage = payload.get("usage") or {}
        model = payload.get("model") or requested_model
        if isinstance(payload.get("data"), list):
            items = sorted(payload["data"], key=lambda d: d.get("index", 0))
            vectors = [d.get("embedding") for d in items]
        else:
            vectors = payload.get("embeddings")
    else:
        vectors = payload
    vectors = _as_vectors(vectors)
    prompt = as_int(usage.get("prompt_tokens"))
    return {
        "provider": provider,
        "model": model,
        "embeddings": vectors,
        "usage": {"promptTokens": prompt, "totalTokens": as_int(usage.get("total_tokens")) or prompt},
        "metadata": {},
    }


def _as_vectors(value: Any) -> list[list[float]]:
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) for x in value):
        return [value]  # a single vector for a single input
    if isinstance(value, list) and all(
        isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) for v in value
    ):
        return value
    raise ValueError("upstream embeddings are not a list of numeric vectors (token-level features?)")


# --- streaming: chat.completion.chunk events ---------------------------------------------------


def stream_body(body: dict[str, Any], include_usage: bool = True) -> dict[str, Any]:
    """Ask for a stream, with usage in its last chunk (OpenAI, the HF router, TGI, vLLM and
    llama.cpp honour `stream_options.include_usage`; servers that ignore it get estimated usage).
    `include_usage=False` for servers that reject unknown fields (they may send usage anyway)."""
    if not include_usage:
        return {**body, "stream": True}
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def _tool_call_delta(raw: dict[str, Any], position: int) -> dict[str, Any]:
    fn = raw.get("function") or {}
    function: dict[str, Any] = {}
    if fn.get("name"):
        function["name"] = fn["name"]
    args = fn.get("arguments")
    if args is not None:
        function["arguments"] = args if isinstance(args, str) else to_json(args)
    out: dict[str, Any] = {"index": raw.get("index", position), "function": function}
    if raw.get("id"):
        out["id"] = raw["id"]
        out["type"] = "function"
    return out


class ChatChunkDecoder:
    """`data: {chat.completion.chunk}` … `data: [DONE]`, as every OpenAI-compatible server
    streams (OpenAI, the HuggingFace router, TGI's Messages API, vLLM, llama.cpp, Ollama)."""

    def __init__(self, provider: str, operation: str, metadata: dict[str, Any] | None = None) -> None:
        self._provider = provider
        self._operation = operation
        self._metadata = metadata or {}       # the adapter's fixed metadata (symbia-labs: local)
        self._first = True

    def decode(self, event: str | None, data: str) -> StreamChunk | None:
        if data == "[DONE]":
            return StreamChunk(done=True)
        payload = stream_event_object(self._provider, self._operation, data)
        if payload.get("error") or event == "error":
            raise stream_failure(self._provider, self._operation, payload)
        chunk = StreamChunk(model=payload.get("model") or None)
        if self._first:
            self._first = False
            metadata = {"id": payload.get("id"), "created": payload.get("created"),
                        "systemFingerprint": payload.get("system_fingerprint")}
            chunk.metadata = {**{k: v for k, v in metadata.items() if v is not None}, **self._metadata}
        usage = payload.get("usage")
        if isinstance(usage, dict):
            chunk.usage = {"promptTokens": as_int(usage.get("prompt_tokens")),
                           "completionTokens": as_int(usage.get("completion_tokens")),
                           "totalTokens": as_int(usage.get("total_tokens"))}
        choices = payload.get("choices")
        if choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                chunk.content = _text(content)
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                chunk.reasoning = reasoning
            calls = delta.get("tool_calls")
            if calls:
                chunk.tool_calls = [_tool_call_delta(c, i) for i, c in enumerate(calls) if isinstance(c, dict)]
            chunk.finish_reason = choice.get("finish_reason") or None
        return chunk
