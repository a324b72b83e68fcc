"""The OpenAI-compatible routes: OpenAI bodies in, OpenAI bodies out, the execute pipeline in
between (same authentication, validation, credentials, usage records). Pure translation
around `ExecuteService.run` / `ExecuteService.stream`.

Model names are `provider/model`; when the first segment is not a provider, the whole name is
a model of the default provider (INTEGRATIONS_OPENAI_DEFAULT_PROVIDER), so `gpt-4o-mini` and
`meta-llama/Llama-3.2-3B-Instruct`-style ids work when their provider is the default.
"""

import base64
import struct
import time
from collections.abc import Mapping
from typing import Any

import orjson

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams, ExecuteRequest
from contracts.openai import ChatCompletionRequest, EmbeddingsRequest, ModelRef, openai_error
from contracts.subjects import OPENAI_CHAT_STREAM
from service.auth.access import Access
from service.commands import Command, Reply
from service.errors import GatewayError
from service.execute import ExecuteService, name_call
from service.providers.base import ProviderSpec, StreamChunk
from service.providers.models import models_for
from service.stream import ChatStream

# Accepted and ignored: bookkeeping that does not change the answer.
IGNORED_CHAT_FIELDS = frozenset({"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier",
                                 "stream", "stream_options"})
# Finish reasons OpenAI's clients know; the gateway's `error` / `incomplete` map onto them.
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter",
           "incomplete": "length", "error": "stop"}


def _unsupported(name: str) -> GatewayError:
    return GatewayError(f"Unsupported parameter: {name} (the gateway cannot honour it)", ErrorCategory.validation,
                        reason=Reason.UNSUPPORTED_PARAMETER)


def openai_error_reply(reply: Reply) -> Reply:
    """An error reply in the envelope → the same error in OpenAI's shape (success untouched)."""
    if reply.status < 400:
        return reply
    try:
        envelope = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        envelope = {}
    status, body, headers = openai_error(envelope if isinstance(envelope, dict) else {}, reply.status)
    return Reply(status, orjson.dumps(body), {**reply.headers, **headers})


def split_model(name: str, providers: Mapping[str, ProviderSpec], default: str) -> tuple[str, str]:
    head, sep, rest = name.partition("/")
    if sep and rest and head in providers:
        return head, rest
    return default, name


def _chat_params(body: ChatCompletionRequest, model: str) -> ExecuteParams:
    for name in body.model_extra or {}:
        if name not in IGNORED_CHAT_FIELDS:
            raise _unsupported(name)
    if body.n not in (None, 1):
        raise _unsupported("n (only n=1)")
    fields: dict[str, Any] = {
        "model": model,
        "messages": body.messages,
        "temperature": body.temperature,
        "topP": body.top_p,
        "maxTokens": body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens,
        "stop": body.stop,
        "seed": body.seed,
        "frequencyPenalty": body.frequency_penalty,
        "presencePenalty": body.presence_penalty,
        "tools": body.tools,
        "toolChoice": body.tool_choice,
        "parallelToolCalls": body.parallel_tool_calls,
        "responseFormat": body.response_format,
        "reasoningEffort": body.reasoning_effort,
        "user": body.user,
    }
    return ExecuteParams.model_validate({k: v for k, v in fields.items() if v is not None})


def _openai_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    prompt = int(usage.get("promptTokens") or 0)
    completion = int(usage.get("completionTokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(usage.get("totalTokens") or prompt + completion)}


def chat_completion(data: Mapping[str, Any], completion_id: str, created: int) -> dict[str, Any]:
    calls = data.get("toolCalls")
    message: dict[str, Any] = {"role": "assistant", "content": data.get("content") or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    out: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": data["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH.get(data.get("finishReason"), "stop")}],
        "usage": _openai_usage(data.get("usage") or {}),
    }
    fingerprint = (data.get("metadata") or {}).get("systemFingerprint")
    if fingerprint:
        out["system_fingerprint"] = fingerprint
    return out


class OpenAIChunkRenderer:
    """Deltas as `chat.completion.chunk` objects: the first carries the assistant role, the
    last one the finish reason, then (with `stream_options.include_usage`) a usage chunk with
    no choices, as OpenAI sends them. The `end` message has no body; HTTP writes `[DONE]`."""

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        self._id = completion_id
        self._created = int(time.time())
        self._model = model
        self._include_usage = include_usage
        self._first = True

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return orjson.dumps(chunk)

    def delta(self, chunk: StreamChunk) -> bytes:
        if chunk.model:
            self._model = chunk.model
        delta: dict[str, Any] = {}
        if self._first:
            self._first = False
            delta["role"] = "assistant"
        if chunk.content:
            delta["content"] = chunk.content
        if chunk.reasoning:
            delta["reasoning_content"] = chunk.reasoning   # the field vLLM / DeepSeek-style servers use
        if chunk.tool_calls:
            delta["tool_calls"] = chunk.tool_calls
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish(self, data: dict[str, Any], reply: Reply) -> tuple[list[bytes], bytes]:
        delta = {"role": "assistant"} if self._first else {}
        bodies = [self._chunk([{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": _FINISH.get(data.get("finishReason"), "stop")}])]
        if self._include_usage:
            bodies.append(self._chunk([], _openai_usage(data.get("usage") or {})))
        return bodies, b""


class OpenAICompatService:
    request_id_prefix = "req"

    def __init__(self, execute: ExecuteService, access: Access, default_provider: str) -> None:
        self._execute = execute
        self._access = access
        self._providers = execute.providers
        self._default = default_provider
        cards = [{"id": f"{name}/{info.id}", "object": "model", "created": 0, "owned_by": name}
                 for name in self._providers for info in models_for(name)]
        self._models = orjson.dumps({"object": "list", "data": cards})
        self._cards = {card["id"]: orjson.dumps(card) for card in cards}

    def _chat_request(self, command: Command) -> tuple[ChatCompletionRequest, ExecuteRequest]:
        body = ChatCompletionRequest.model_validate_json(command.body)
        provider, model = split_model(body.model, self._providers, self._default)
        request = ExecuteRequest(provider=provider, operation="chat.completions", params=_chat_params(body, model))
        return body, request

    async def chat(self, command: Command) -> Reply:
        caller = await self._execute.authenticate(command)
        body, request = self._chat_request(command)
        name_call(command.record, request)
        if body.stream:
            raise GatewayError(f"stream: true needs the streaming subject {OPENAI_CHAT_STREAM}",
                               ErrorCategory.validation, reason=Reason.INVALID_REQUEST)
        result = await self._execute.run_call(caller, request, command.record,
                                              deadline=self._execute.deadline(command))
        return command.json_reply(200, chat_completion(result.data, f"chatcmpl-{command.request_id}",
                                                       int(time.time())), result.headers)

    async def open_chat_stream(self, command: Command) -> ChatStream:
        caller = await self._execute.authenticate(command)
        body, request = self._chat_request(command)
        name_call(command.record, request)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        renderer = OpenAIChunkRenderer(f"chatcmpl-{command.request_id}", body.model, include_usage)
        return await self._execute.stream(command, caller, request, renderer,
                                          deadline=self._execute.deadline(command))

    async def embeddings(self, command: Command) -> Reply:
        caller = await self._execute.authenticate(command)
        body = EmbeddingsRequest.model_validate_json(command.body)
        for name in body.model_extra or {}:
            raise _unsupported(name)
        provider, model = split_model(body.model, self._providers, self._default)
        fields = {"model": model, "input": body.input, "dimensions": body.dimensions, "user": body.user}
        params = ExecuteParams.model_validate({k: v for k, v in fields.items() if v is not None})
        request = ExecuteRequest(provider=provider, operation="embeddings", params=params)
        name_call(command.record, request)
        result = await self._execute.run_call(caller, request, command.record,
                                              deadline=self._execute.deadline(command))
        data = result.data
        as_base64 = body.encoding_format == "base64"
        items = [{"object": "embedding", "index": i,
                  "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v}
                 for i, v in enumerate(data["embeddings"])]
        usage = data.get("usage") or {}
        prompt = int(usage.get("promptTokens") or 0)
        return command.json_reply(200, {"object": "list", "data": items, "model": data["model"],
                                        "usage": {"prompt_tokens": prompt,
                                                  "total_tokens": int(usage.get("totalTokens") or prompt)}},
                                  result.headers)

    async def models(self, command: Command) -> Reply:
        await self._access.caller(command.headers)   # authenticated like the rest; a listing is not usage
        return Reply(200, self._models, {"x-request-id": command.request_id})

    async def model(self, command: Command) -> Reply:
        """One entry of the model list; a bare name is looked up under the default provider, as
        chat completions resolve it."""
        await self._access.caller(command.headers)
        wanted = ModelRef.model_validate_json(command.body or b"{}").model
        provider, model = split_model(wanted, self._providers, self._default)
        card = self._cards.get(f"{provider}/{model}")
        if card is None:
            raise GatewayError(f"The model '{wanted}' does not exist (GET /v1/models lists the models)",
                               ErrorCategory.not_found, status=404, reason=Reason.MODEL_NOT_FOUND)
        return Reply(200, card, {"x-request-id": command.request_id})
