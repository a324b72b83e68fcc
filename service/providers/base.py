"""What an adapter is: pure functions from the normalized request to the upstream request,
and from the upstream answer (or error) to the normalized response (or a GatewayError).
Transport, timeouts, credentials and error envelopes live outside adapters."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class AuthStyle:
    """How a provider takes its key: `Authorization: Bearer <key>`, a named header
    (`x-api-key: <key>`, Azure's `api-key: <key>`), or no key at all."""

    kind: Literal["bearer", "header", "none"] = "bearer"
    header: str = "authorization"
    prefix: str = "Bearer "

    def headers(self, api_key: str | None) -> dict[str, str]:
        if self.kind == "none" or not api_key:
            return {}
        return {self.header: f"{self.prefix}{api_key}"}


BEARER = AuthStyle()
NO_AUTH = AuthStyle("none", "", "")


class ProviderAdapter(Protocol):
    def headers(self, api_key: str | None) -> dict[str, str]:
        """Auth and fixed headers for any request to the provider (also model listing)."""
        ...

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
    # --- added for configured providers and liveness (issue 10) -----------------------------
    credential_key: str = ""             # key of its credential in Identity; "" = the provider name
    source: Literal["builtin", "preset", "config"] = "builtin"
    health_url: str | None = None        # GET answering 2xx = the provider is up (no credential needed)
    models_url: str | None = None        # GET of an OpenAI-style model list, listed live

    @property
    def identity_key(self) -> str:
        """What the credential resolver is asked for (several providers may share one key)."""
        return self.credential_key or self.name


@runtime_checkable
class ModelLister(Protocol):
    """Optional adapter capability: list the models an account can use (`GET /models`).
    Providers without it are described by their static list in models.json."""

    def models_call(self, api_key: str | None) -> UpstreamCall: ...

    def parse_models(self, payload: Any) -> list[str]:
        """Model ids worth offering, newest first."""
        ...
