"""OpenAI-compatible routes (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`): OpenAI's
own request, reply and error shapes, so that the official SDKs work with only `base_url` and
`api_key` changed (docs/STREAMING.md). They run through the same pipeline as execute.

Model names are `provider/model` (`openai/gpt-4o-mini`, `huggingface/meta-llama/Llama-3.2-3B-Instruct`);
a name whose first segment is not a provider goes to the configured default provider.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.envelope import DEFAULT_RETRYABLE, ErrorCategory
from contracts.http import Route
from contracts.streaming import OPENAI_SSE, StreamRoute

V1_PREFIX = "/v1"


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat.completions body. Parameters that would change the answer but have no
    gateway equivalent (n > 1, logprobs, audio, ...) are a 400 naming the parameter;
    bookkeeping ones (store, metadata, service_tier, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=320)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    n: int | None = None


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=320)
    input: str | list[Any]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


class ModelsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class ChatCompletion(BaseModel):
    """`object: chat.completion` (non-streaming answer). Streams send `chat.completion.chunk`
    objects instead, then `data: [DONE]`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: OpenAIUsage


class EmbeddingsList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    model: str
    usage: OpenAIUsage


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]


class ModelCard(BaseModel):
    """One model as OpenAI's `GET /v1/models/{model}` answers it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelRef(BaseModel):
    """Bus request of `integrations.v1.openai.model`: the path's model id (`provider/model`, or a
    bare name for the default provider)."""

    model: str = Field(min_length=1, max_length=300)


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


# --- the gateway's error envelope in OpenAI's shape --------------------------------------------

_ERROR_TYPE = {
    ErrorCategory.validation: "invalid_request_error",
    ErrorCategory.not_found: "invalid_request_error",
    ErrorCategory.auth: "authentication_error",
    ErrorCategory.rate_limit: "rate_limit_error",
    ErrorCategory.quota: "insufficient_quota",
    ErrorCategory.content_filter: "invalid_request_error",
    ErrorCategory.timeout: "timeout_error",
    ErrorCategory.provider: "api_error",
    ErrorCategory.network: "api_error",
    ErrorCategory.internal: "server_error",
}


def openai_error(envelope: dict[str, Any], status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of an OpenAI-style error for an error envelope.

    Statuses stay the gateway's, except where OpenAI's own API answers the same condition with
    another one that its SDKs map to a different exception: quota is 429 (RateLimitError with
    code insufficient_quota), content filtering 400, an unknown model 404. `x-should-retry`
    tells the SDKs whether their automatic retries make sense.
    """
    try:
        category = ErrorCategory(envelope.get("category"))
    except ValueError:
        category = ErrorCategory.internal
    reason = envelope.get("reason")
    upstream = envelope.get("upstream") or {}
    if category is ErrorCategory.quota:
        status = 429
    elif category is ErrorCategory.content_filter:
        status = 400
    elif reason == "model_not_found":
        status = 404
    kind = _ERROR_TYPE[category]
    if status == 403:
        kind = "permission_error"
    code = reason or upstream.get("code")
    if category is ErrorCategory.content_filter:
        code = "content_policy_violation"
    elif category is ErrorCategory.quota:
        code = "insufficient_quota"
    body = {"error": {"message": envelope.get("error") or "Error", "type": kind, "param": None, "code": code}}
    retryable = envelope.get("retryable")
    if not isinstance(retryable, bool):
        retryable = DEFAULT_RETRYABLE[category]
    return status, body, {"x-should-retry": "true" if retryable else "false"}


ROUTES = (
    Route(
        method="POST",
        path=f"{V1_PREFIX}/chat/completions",
        subject=subjects.OPENAI_CHAT,
        summary="OpenAI-compatible chat completion (streams with `stream: true`)",
        tag="openai",
        request_model=ChatCompletionRequest,
        response_model=ChatCompletion,
        description=("OpenAI's wire format; `model` is `provider/model` (a bare name uses the default provider). "
                     "Authenticate with `Authorization: Bearer <gateway key>`. Errors are OpenAI-style "
                     "`{\"error\": {message, type, param, code}}`."),
        error_statuses=(400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 504),
        stream=StreamRoute(subjects.OPENAI_CHAT_STREAM, OPENAI_SSE),
        error_format="openai",
        aliased=False,
    ),
    Route(
        method="POST",
        path=f"{V1_PREFIX}/embeddings",
        subject=subjects.OPENAI_EMBEDDINGS,
        summary="OpenAI-compatible embeddings (`encoding_format` float or base64)",
        tag="openai",
        request_model=EmbeddingsRequest,
        response_model=EmbeddingsList,
        error_statuses=(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
        error_format="openai",
        aliased=False,
    ),
    Route(
        method="GET",
        path=f"{V1_PREFIX}/models",
        subject=subjects.OPENAI_MODELS,
        summary="OpenAI-compatible model list (`provider/model` ids)",
        tag="openai",
        response_model=ModelList,
        error_statuses=(401, 403, 500, 503, 504),
        error_format="openai",
        aliased=False,
    ),
    Route(
        method="GET",
        # `:path` because ids hold a slash (`openai/gpt-4o-mini`), as the OpenAI SDKs send them
        path=f"{V1_PREFIX}/models/{{model:path}}",
        subject=subjects.OPENAI_MODEL,
        summary="OpenAI-compatible model retrieval (`provider/model`, or a bare name of the default provider)",
        tag="openai",
        request_model=ModelRef,
        response_model=ModelCard,
        error_statuses=(401, 403, 404, 500, 503, 504),
        error_format="openai",
        aliased=False,
    ),
)
