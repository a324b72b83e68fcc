"""A streamed execute after the upstream accepted it: upstream events → normalized deltas (through
the provider's pure StreamDecoder) → rendered chunk bodies, accumulated into the same normalized
response a non-streaming call returns, and usage for the call record in every outcome.

Rendering is the only thing that differs between the execute stream and the OpenAI-compatible
one (`StreamRenderer`); decoding, accumulation, truncation detection and usage are shared.
"""

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.calls import CallRecord
from service.commands import Command, Reply, error_reply
from service.errors import GatewayError
from service.providers.base import OperationSpec, StreamChunk, StreamDecoder
from service.providers.chat_format import finish_reason
from service.transport import UpstreamStream

# Status of the reply recorded for a stream the requester abandoned (nginx's "client closed request").
CLIENT_CLOSED = 499


def estimate_tokens(text: str) -> int:
    """No tokenizer here: ~4 characters per token, the usual rule of thumb for English."""
    return math.ceil(len(text) / 4) if text else 0


class StreamAccumulator:
    """Adds stream chunks up into the normalized chat response (reference §3.3 shape)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: dict[str, int] = {}
        self.model: str | None = None
        self.metadata: dict[str, Any] = {}
        self.deltas = 0                       # upstream events that carried generated output

    def add(self, chunk: StreamChunk) -> None:
        if chunk.content:
            self.content.append(chunk.content)
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        for call in chunk.tool_calls or ():
            slot = self.tool_calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": []})
            fn = call.get("function") or {}
            if call.get("id"):
                slot["id"] = call["id"]
            if fn.get("name"):
                slot["name"] = fn["name"]
            if fn.get("arguments"):
                slot["arguments"].append(fn["arguments"])
        if chunk.has_delta:
            self.deltas += 1
        if chunk.finish_reason:
            self.finish = chunk.finish_reason
        if chunk.usage:
            self.usage.update(chunk.usage)
        if chunk.model:
            self.model = chunk.model
        if chunk.metadata:
            self.metadata.update(chunk.metadata)

    def calls(self) -> list[dict[str, Any]] | None:
        if not self.tool_calls:
            return None
        return [{"id": slot["id"], "type": "function",
                 "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])}}
                for _, slot in sorted(self.tool_calls.items())]

    def generated_tokens(self) -> int:
        """Completion tokens when the upstream did not say: providers stream about one token per
        event, so take the larger of the event count and the character estimate."""
        text = "".join(self.content) + "".join(self.reasoning) + "".join(
            "".join(slot["arguments"]) for slot in self.tool_calls.values())
        return max(self.deltas, estimate_tokens(text))


def prompt_estimate(params: ExecuteParams) -> int:
    parts = [params.prompt or "", params.system or "", params.systemPrompt or "", params.instructions or ""]
    for message in params.messages or ():
        if isinstance(message.content, str):
            parts.append(message.content)
        elif isinstance(message.content, list):
            parts.extend(p.get("text", "") for p in message.content if isinstance(p, dict))
    return estimate_tokens("".join(parts))


class StreamRenderer(Protocol):
    """The wire format of one kind of stream (execute's own, or OpenAI's chunks)."""

    def delta(self, chunk: StreamChunk) -> bytes: ...

    def finish(self, data: dict[str, Any], reply: Reply) -> tuple[list[bytes], bytes]:
        """(chunk bodies still to send, body of the `end` message) for a complete stream whose
        normalized answer is `data` (`reply`: the execute reply with it)."""
        ...


def _delta_json(chunk: StreamChunk) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if chunk.content:
        out["content"] = chunk.content
    if chunk.reasoning:
        out["reasoning"] = chunk.reasoning
    if chunk.tool_calls:
        out["toolCalls"] = chunk.tool_calls
    return out


class ExecuteRenderer:
    """`integrations.v1.execute.stream`: StreamDelta chunks, then the non-streaming reply body."""

    def delta(self, chunk: StreamChunk) -> bytes:
        return orjson.dumps(_delta_json(chunk))

    def finish(self, data: dict[str, Any], reply: Reply) -> tuple[list[bytes], bytes]:
        return [], reply.body


def success_reply(command: Command, data: dict[str, Any]) -> Reply:
    return command.json_reply(200, {"success": True, "data": data, "requestId": command.request_id,
                                    "durationMs": command.elapsed_ms()})


class ChatStream:
    """One accepted stream. The bus glue iterates `chunks()`, then calls exactly one of
    `completed()`, `failed()` or `cancelled(reason)`, and always `close()`."""

    def __init__(self, *, command: Command, record: CallRecord, provider: str, op: OperationSpec,
                 params: ExecuteParams, upstream: UpstreamStream, decoder: StreamDecoder,
                 renderer: StreamRenderer) -> None:
        self._command = command
        self._record = record
        self._provider = provider
        self._op = op
        self._params = params
        self._upstream = upstream
        self._decoder = decoder
        self.renderer = renderer
        self._acc = StreamAccumulator()
        self._ended = False
        record.streamed = True

    async def chunks(self) -> AsyncIterator[bytes]:
        done = False
        decode, acc, render = self._decoder.decode, self._acc, self.renderer.delta
        async with contextlib.aclosing(self._upstream.events()) as events:
            async for event in events:
                chunk = decode(event.event, event.data)
                if chunk is None:
                    continue
                acc.add(chunk)
                if chunk.has_delta:
                    yield render(chunk)
                if chunk.done:
                    done = True
                    break
        # Without its end marker a stream still counts as complete when the upstream closed it
        # cleanly after a finish reason (servers that omit `[DONE]`); anything else was cut short.
        if not done and acc.finish is None:
            raise GatewayError(f"{self._provider} ended the stream before it was complete (no end marker)",
                               ErrorCategory.provider, reason=Reason.STREAM_INTERRUPTED, provider=self._provider,
                               operation=self._op.name)
        self._ended = True
        await self._upstream.finish()

    def _data(self) -> dict[str, Any]:
        acc = self._acc
        usage = dict(acc.usage)
        estimated = False
        if "completionTokens" not in usage:   # absent, not zero: the upstream did not say
            usage["completionTokens"] = acc.generated_tokens()
            estimated = True
        if "promptTokens" not in usage:
            usage["promptTokens"] = prompt_estimate(self._params)
            estimated = True
        if estimated or not usage.get("totalTokens"):
            usage["totalTokens"] = usage["promptTokens"] + usage["completionTokens"]
        metadata = dict(acc.metadata)
        reasoning = "".join(acc.reasoning)
        if reasoning:
            metadata["reasoning"] = reasoning
        if estimated:
            metadata["usageEstimated"] = True
        data: dict[str, Any] = {
            "provider": self._provider,
            "model": acc.model or self._params.model,
            "content": "".join(acc.content),
            "usage": {"promptTokens": usage["promptTokens"], "completionTokens": usage["completionTokens"],
                      "totalTokens": usage["totalTokens"]},
            "finishReason": finish_reason(acc.finish),
        }
        calls = acc.calls()
        if calls:
            data["toolCalls"] = calls
        data["metadata"] = metadata
        self._record.usage_estimated = estimated
        self._record.model_served = data["model"]
        self._record.add_usage(data["usage"])
        return data

    def completed(self) -> tuple[list[bytes], bytes, Reply]:
        """(trailing chunk bodies, end body, the reply recorded for the call)."""
        data = self._data()
        reply = success_reply(self._command, data)
        trailing, end = self.renderer.finish(data, reply)
        return trailing, end, reply

    def failed(self) -> None:
        """The upstream failed mid-stream: record the usage of what it generated before."""
        self._partial()

    def cancelled(self, reason: str) -> Reply:
        """The requester went away: stop the upstream, record the partial usage."""
        self._upstream.abort()
        self._partial()
        err = GatewayError(f"The stream was abandoned by its requester ({reason})", ErrorCategory.network,
                           status=CLIENT_CLOSED, retryable=False, reason=Reason.CLIENT_DISCONNECTED,
                           provider=self._provider, operation=self._op.name)
        return error_reply(err, self._command)

    def _partial(self) -> None:
        self._record.partial = True
        self._data()

    def abort(self) -> None:
        """Safe from any task (a cancel message, the ack watchdog): the pending read ends."""
        if not self._ended:
            self._upstream.abort()

    def close(self) -> None:
        self.abort()
