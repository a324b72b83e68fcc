"""The one capability table: which provider runs which operation with which parameters.

`/execute` validates against it (unknown provider or operation → 400, a parameter the
provider does not take → 400 naming it), and `/providers` and `/capabilities` report it.
"""

from collections.abc import Mapping
from typing import Any

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers.base import OperationKind, OperationSpec, ProviderSpec
from service.providers.huggingface import HuggingFaceAdapter
from service.providers.openai import OpenAIAdapter
from service.settings import Settings

_COMMON_CHAT = frozenset({
    "model", "messages", "prompt", "temperature", "maxTokens", "topP", "stop", "stopSequences", "seed",
    "frequencyPenalty", "presencePenalty", "system", "systemPrompt", "instructions", "tools", "toolChoice",
    "responseFormat", "jsonSchema",
})
OPENAI_CHAT = _COMMON_CHAT | {"reasoningEffort", "parallelToolCalls", "user"}
OPENAI_RESPONSES = frozenset({
    "model", "messages", "prompt", "input", "system", "systemPrompt", "instructions", "temperature", "topP",
    "maxTokens", "tools", "toolChoice", "responseFormat", "jsonSchema", "previousResponseId", "reasoningEffort",
    "showReasoning", "parallelToolCalls", "user",
})
OPENAI_EMBEDDINGS = frozenset({"model", "input", "text", "dimensions", "user"})
HF_CHAT = _COMMON_CHAT
HF_TGI_GENERATE = frozenset({
    "model", "prompt", "messages", "system", "systemPrompt", "instructions", "temperature", "maxTokens", "topP",
    "topK", "stop", "stopSequences", "seed", "frequencyPenalty",
})
HF_EMBEDDINGS = frozenset({"model", "input", "text"})


def _op(name: str, kind: OperationKind, params: frozenset[str], summary: str) -> tuple[str, OperationSpec]:
    return name, OperationSpec(name=name, kind=kind, params=params, summary=summary)


def build_provider_table(settings: Settings) -> dict[str, ProviderSpec]:
    hf_generate = HF_TGI_GENERATE if settings.huggingface_text_generation_api == "tgi" else HF_CHAT
    return {
        "openai": ProviderSpec(
            name="openai",
            display_name="OpenAI",
            description="OpenAI GPT and reasoning models, or any OpenAI-compatible server at OPENAI_BASE_URL",
            operations=dict([
                _op("chat.completions", "chat", OPENAI_CHAT, "Chat Completions API"),
                _op("image.description", "vision", OPENAI_CHAT, "Describe an image (chat with image parts)"),
                _op("responses", "responses", OPENAI_RESPONSES, "Responses API"),
                _op("embeddings", "embeddings", OPENAI_EMBEDDINGS, "Embeddings API"),
            ]),
            adapter=OpenAIAdapter(settings.openai_base_url, settings.openai_organization),
            base_url=settings.openai_base_url,
            credential_env=("OPENAI_API_KEY",),
            default_model="gpt-4o-mini",
        ),
        "huggingface": ProviderSpec(
            name="huggingface",
            display_name="Hugging Face",
            description="Hugging Face Inference router, TGI and TEI servers",
            operations=dict([
                _op("chat.completions", "chat", HF_CHAT, "Chat completion (router / TGI Messages API)"),
                _op("text.generation", "generate", hf_generate, "Text generation (chat or TGI /generate)"),
                _op("image.description", "vision", HF_CHAT, "Describe an image with a vision model"),
                _op("embeddings", "embeddings", HF_EMBEDDINGS, "Feature extraction (hf-inference / TEI / OpenAI)"),
            ]),
            adapter=HuggingFaceAdapter(settings.huggingface_base_url, settings.huggingface_text_generation_api,
                                       settings.huggingface_embeddings_api),
            base_url=settings.huggingface_base_url,
            credential_env=("HUGGINGFACE_API_KEY", "HF_TOKEN"),
            default_model="meta-llama/Llama-3.2-3B-Instruct",
        ),
    }


def _invalid(message: str, reason: str, provider: str, operation: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.validation, reason=reason, provider=provider, operation=operation)


def resolve_operation(table: Mapping[str, ProviderSpec], provider: str, operation: str) -> tuple[ProviderSpec,
                                                                                              OperationSpec]:
    spec = table.get(provider)
    if spec is None:
        raise _invalid(f"Unknown provider: {provider}. Available: {', '.join(table)}", Reason.UNKNOWN_PROVIDER,
                       provider, operation)
    op = spec.operations.get(operation)
    if op is None:
        raise _invalid(
            f"{provider} does not support operation '{operation}'. Supported: {', '.join(spec.operations)}",
            Reason.UNSUPPORTED_OPERATION, provider, operation,
        )
    return spec, op


def _has_image(params: ExecuteParams) -> bool:
    for message in params.messages or []:
        if isinstance(message.content, list) and any(
            isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image")
            for part in message.content
        ):
            return True
    return False


def _valid_embedding_input(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(v, str) for v in value) or all(isinstance(v, int) for v in value) or all(
        isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value
    )


def validate_params(provider: str, op: OperationSpec, params: ExecuteParams) -> None:
    """What the operation needs and what the provider accepts (reference §3.4, fixed)."""
    unsupported = sorted(params.given() - op.params)
    if unsupported:
        raise _invalid(
            f"Invalid params: {provider} {op.name} does not support {', '.join(unsupported)}",
            Reason.UNSUPPORTED_PARAMETER, provider, op.name,
        )
    problem = None
    if op.kind in ("chat", "vision", "generate") and not (params.messages or params.prompt):
        problem = "messages or prompt is required"
    elif op.kind == "generate" and params.messages and params.topK is not None:
        # TGI's native /generate takes top_k; messages go to the chat route, which does not.
        problem = "topK applies to a prompt (TGI /generate), not to messages"
    elif op.kind == "vision" and not _has_image(params):
        problem = "image.description needs a message with an image_url (or image) content part"
    elif op.kind == "responses" and params.input is None and not (params.messages or params.prompt):
        problem = "input, messages or prompt is required"
    elif op.kind == "embeddings":
        value = params.input if params.input is not None else params.text
        if value is None:
            problem = "input or text is required"
        elif not _valid_embedding_input(value):
            problem = "input must be a non-empty string, list of strings, or list of token ids"
    if problem:
        raise _invalid(f"Invalid params: {problem}", Reason.INVALID_REQUEST, provider, op.name)
