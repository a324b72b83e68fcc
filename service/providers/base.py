"""What an adapter is: pure functions from the normalized request to the upstream request,
and from the upstream answer (or error) to the normalized response (or a GatewayError).
Transport, timeouts, credentials and error envelopes live outside adapters."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from contracts.execute import ExecuteParams
from service.errors import GatewayError

OperationKind = Literal["chat", "vision", "embeddings", "responses", "generate"]


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """A row of the capability table: one operation of one provider."""

    name: str
    kind: OperationKind
    params: frozenset[str]
    summary: str = ""
    streaming: bool = False              # the provider can stream this operation (adapter.build_stream)


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    method: str
    url: str
    body: Any = None                     # JSON-encodable; None for no body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamChunk:
    """What one upstream stream event means, provider-neutral. Text, reasoning and tool-call
    fragments are deltas (new since the previous event); the rest is set when the upstream
    says it (usage, typically in the last event)."""

    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None    # OpenAI delta shape: index, id?, function{name?, arguments?}
    finish_reason: str | None = None                  # the upstream's own value (mapped by chat_format)
    usage: dict[str, int] | None = None               # normalized promptTokens / completionTokens / totalTokens
    model: str | None = None
    metadata: dict[str, Any] | None = None
    done: bool = False                                # the upstream's end-of-stream marker

    @property
    def has_delta(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)


class StreamDecoder(Protocol):
    """Pure and per stream (it may keep state between events, e.g. which block is a tool call):
    one SSE event (its `event:` name and `data:` text) → a StreamChunk, or None to skip it.
    An error event or an unreadable one raises GatewayError."""

    def decode(self, event: str | None, data: str) -> StreamChunk | None: ...


class ProviderAdapter(Protocol):
    def build(self, op: OperationSpec, params: ExecuteParams, api_key: str | None) -> UpstreamCall: ...

    def parse(self, op: OperationSpec, params: ExecuteParams, payload: Any) -> dict[str, Any]: ...

    def error(
        self, op: OperationSpec, status: int, payload: Any, headers: Mapping[str, str]
    ) -> GatewayError: ...


class StreamingAdapter(ProviderAdapter, Protocol):
    """An adapter whose operations marked `streaming` in the capability table can stream:
    the upstream request that asks for a stream (and for usage in it, where the API can),
    and a fresh decoder for that stream's events. Errors before the stream starts (non-2xx)
    still go through `error`."""

    def build_stream(self, op: OperationSpec, params: ExecuteParams,
                     api_key: str | None) -> tuple[UpstreamCall, StreamDecoder]: ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider: its operations, how it authenticates, and its adapter."""

    name: str
    display_name: str
    description: str
    operations: Mapping[str, OperationSpec]
    adapter: ProviderAdapter
    base_url: str
    credential_env: tuple[str, ...]      # env vars that hold its key in local mode
    needs_credential: bool = True
    default_model: str = ""
