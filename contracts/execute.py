"""`integrations.v1.execute` / `POST /api/integrations/execute`: request and normalized reply.

The request is the original service's execute body (reference §3.1) with its defects fixed:
snake_case spellings are accepted beside camelCase, `dimensions` is accepted for embeddings,
the `developer` role is allowed, and `credentialId` is honoured: the credential resolvers look it up
by id and refuse an id that is not the caller's or its org's (local ids are `env:<provider>` and
`file:<org>:<provider>`; Identity ids are Identity's).
Unknown keys are still rejected so that typos surface as a 400 instead of being dropped.
"""

from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.http import API_PREFIX, Route
from contracts.resilience import FallbackTarget
from contracts.streaming import EXECUTE_SSE, StreamRoute


class Operation(StrEnum):
    chat_completions = "chat.completions"
    responses = "responses"
    messages = "messages"
    text_generation = "text.generation"
    image_description = "image.description"
    embeddings = "embeddings"


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class ChatMessage(BaseModel):
    """An OpenAI-style chat message. Unknown fields are kept and passed to OpenAI-compatible
    upstreams unchanged (audio, refusal, ...)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = Field(None, validation_alias=_alias("tool_call_id", "toolCallId"))
    tool_calls: list[dict[str, Any]] | None = Field(None, validation_alias=_alias("tool_calls", "toolCalls"))


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class ExecuteParams(BaseModel):
    """Provider-neutral parameters. Each provider declares which of them it accepts
    (`GET /api/integrations/capabilities`); a parameter a provider does not accept is a 400."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    input: str | list[Any] | None = None
    text: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    maxTokens: int | None = Field(
        None, gt=0,
        validation_alias=_alias("maxTokens", "max_tokens", "maxCompletionTokens", "max_completion_tokens",
                                "maxOutputTokens", "max_output_tokens"),
    )
    topP: float | None = Field(None, ge=0, le=1, validation_alias=_alias("topP", "top_p"))
    topK: int | None = Field(None, gt=0, validation_alias=_alias("topK", "top_k"))
    stopSequences: list[str] | None = Field(None, validation_alias=_alias("stopSequences", "stop_sequences"))
    stop: str | list[str] | None = None
    seed: int | None = None
    frequencyPenalty: float | None = Field(
        None, ge=-2, le=2, validation_alias=_alias("frequencyPenalty", "frequency_penalty"))
    presencePenalty: float | None = Field(
        None, ge=-2, le=2, validation_alias=_alias("presencePenalty", "presence_penalty"))
    system: str | None = None
    systemPrompt: str | None = Field(None, validation_alias=_alias("systemPrompt", "system_prompt"))
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    toolChoice: Any = Field(None, validation_alias=_alias("toolChoice", "tool_choice"))
    responseFormat: str | dict[str, Any] | None = Field(
        None, validation_alias=_alias("responseFormat", "response_format"))
    jsonSchema: dict[str, Any] | None = Field(None, validation_alias=_alias("jsonSchema", "json_schema"))
    previousResponseId: str | None = Field(
        None, validation_alias=_alias("previousResponseId", "previous_response_id"))
    reasoningEffort: ReasoningEffort | None = Field(
        None, validation_alias=_alias("reasoningEffort", "reasoning_effort"))
    showReasoning: bool | None = Field(None, validation_alias=_alias("showReasoning", "show_reasoning"))
    enablePreambles: bool | None = Field(None, validation_alias=_alias("enablePreambles", "enable_preambles"))
    compactMode: bool | None = Field(None, validation_alias=_alias("compactMode", "compact_mode"))
    parallelToolCalls: bool | None = Field(
        None, validation_alias=_alias("parallelToolCalls", "parallel_tool_calls"))
    dimensions: int | None = Field(None, gt=0)
    user: str | None = None

    def given(self) -> set[str]:
        """Names of the parameters the caller actually set (None counts as not set)."""
        return {name for name in self.model_fields_set if getattr(self, name) is not None}


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1, max_length=64)
    operation: str = Field(min_length=1, max_length=64)
    params: ExecuteParams
    credentialId: str | None = Field(None, validation_alias=_alias("credentialId", "credential_id"))
    # Top level, not in params: it changes how the answer is delivered, not what the provider is
    # asked. Over HTTP `true` answers with server-sent events; on the bus it belongs on the
    # subject integrations.v1.execute.stream (docs/STREAMING.md).
    stream: bool = False
    # Tried in order when the provider fails in a retryable way (5xx, 429, timeout, network) or
    # its circuit is open; absent: the org's default chain for the operation; []: no fallback.
    fallbacks: list[FallbackTarget] | None = Field(None, max_length=8)
    # The caller's budget in milliseconds (as the X-Timeout-Ms header; the smaller one wins).
    timeout: int | None = Field(None, gt=0, le=3_600_000, description="milliseconds")


# --- normalized replies (reference §3.3) ----------------------------------------------------


class Usage(BaseModel):
    promptTokens: int = 0
    completionTokens: int | None = None
    totalTokens: int = 0


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "error", "incomplete"]


class ChatData(BaseModel):
    provider: str
    model: str
    content: str
    usage: Usage
    finishReason: FinishReason
    toolCalls: list[ToolCall] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class EmbeddingsData(BaseModel):
    provider: str
    model: str
    embeddings: list[list[float]] = Field(description="one vector per input, in input order")
    usage: Usage
    metadata: dict[str, Any] = Field(default_factory=dict)


class ExecuteSuccess(BaseModel):
    success: Literal[True] = True
    data: ChatData | EmbeddingsData
    requestId: str
    durationMs: int


ROUTES = (
    Route(
        method="POST",
        path=f"{API_PREFIX}/execute",
        subject=subjects.EXECUTE,
        summary="Run an LLM operation (chat completion, text generation, embeddings) on a provider",
        tag="execute",
        request_model=ExecuteRequest,
        response_model=ExecuteSuccess,
        description=(
            "Normalizes the provider's answer into one shape. Provider keys are resolved by the gateway; "
            "callers never send them. Errors use the one error envelope."
        ),
        error_statuses=(400, 401, 402, 403, 413, 422, 429, 500, 502, 503, 504),
        stream=StreamRoute(subjects.EXECUTE_STREAM, EXECUTE_SSE),
    ),
)
