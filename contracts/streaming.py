"""Streams: the normalized delta a streaming execute sends, and how a route turns bus stream
messages into server-sent events (docs/STREAMING.md).

On the bus a stream is a sequence of messages on the requester's reply subject (headers in
contracts/headers.py): `start`, `chunk` × n, then `end` or `error`. Over HTTP each message
becomes one SSE event; a route's `SseDialect` says how (the gateway's own event names for
`/execute`, OpenAI's `data:`-only events and `[DONE]` for `/v1/chat/completions`).
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ToolCallFunctionDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A fragment of a tool call; fragments with the same `index` concatenate (`id` and
    `function.name` arrive in the first fragment, `function.arguments` in pieces)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ToolCallFunctionDelta


class StreamDelta(BaseModel):
    """Body of a `chunk` message on `integrations.v1.execute.stream` and the data of an SSE
    `delta` event: the new text (and/or reasoning, tool-call fragments) since the last one."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = None
    reasoning: str | None = None
    toolCalls: list[ToolCallDelta] | None = None


@dataclass(frozen=True)
class SseDialect:
    """How stream messages are written as SSE. `None` event names write `data:` lines only."""

    name: str
    chunk_event: str | None
    end_event: str | None
    error_event: str | None
    done_marker: str | None         # written as `data: <marker>` after a clean end


EXECUTE_SSE = SseDialect("execute", chunk_event="delta", end_event="done", error_event="error", done_marker=None)
OPENAI_SSE = SseDialect("openai", chunk_event=None, end_event=None, error_event=None, done_marker="[DONE]")


@dataclass(frozen=True)
class StreamRoute:
    """A route that streams when its JSON body has `"stream": true` at the top level."""

    subject: str
    dialect: SseDialect


def wants_stream(body: Any) -> bool:
    return isinstance(body, dict) and body.get("stream") is True
