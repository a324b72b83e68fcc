"""The one capability table: which provider runs which operation with which parameters.

`/execute` validates against it (unknown provider or operation → 400, a parameter the
provider does not take → 400 naming it), and `/providers` and `/capabilities` report it.
Rows: the built-in providers in the original's registration order (openai, anthropic,
huggingface, symbia-labs), then the configured OpenAI-compatible ones (service/providers/
configured.py: presets, the providers file, INTEGRATIONS_PROVIDERS).
"""

from collections.abc import Mapping
from typing import Any

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers.anthropic import AnthropicAdapter
from service.providers.base import NO_AUTH, OperationKind, OperationSpec, ProviderSpec
from service.providers.configured import ProviderConfigError, load_configured
from service.providers.huggingface import HuggingFaceAdapter
from service.providers.models import register_models
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
# Messages API: no seed, penalties or response formats; topK and the tool options map.
ANTHROPIC_MESSAGES = frozenset({
    "model", "messages", "prompt", "system", "systemPrompt", "instructions", "temperature", "maxTokens", "topP",
    "topK", "stop", "stopSequences", "tools", "toolChoice", "parallelToolCalls", "user",
})
# What the Models service's chat schema takes (string contents, no tools, no seed).
SYMBIA_LABS_CHAT = frozenset({
    "model", "messages", "prompt", "system", "systemPrompt", "instructions", "temperature", "maxTokens", "topP",
    "stop", "stopSequences", "frequencyPenalty", "presencePenalty",
})
SYMBIA_LABS_EMBEDDINGS = frozenset({"model", "input", "text"})
# Defaults for configured OpenAI-compatible providers, per operation kind; a providers file
# narrows them with excludeParams or replaces them with params.
OPENAI_COMPATIBLE: dict[OperationKind, frozenset[str]] = {
    "chat": OPENAI_CHAT, "vision": OPENAI_CHAT, "generate": OPENAI_CHAT, "embeddings": OPENAI_EMBEDDINGS,
    "responses": OPENAI_RESPONSES,
}


def _op(name: str, kind: OperationKind, params: frozenset[str], summary: str,
        streaming: bool = False) -> tuple[str, OperationSpec]:
    return name, OperationSpec(name=name, kind=kind, params=params, summary=summary, streaming=streaming)


def build_provider_table(settings: Settings) -> dict[str, ProviderSpec]:
    """Built-in rows, then configured ones. Raises ProviderConfigError for an invalid providers
    document (start-up refuses to run with it)."""
    table = _builtin_rows(settings)
    builtin = set(table)
    configured = load_configured(settings, OPENAI_COMPATIBLE)
    for row in configured:
        name = row.spec.name
        if name in builtin and not row.override:
            raise ProviderConfigError(f"{row.origin}: provider {name!r} is built in; set `override: true` on it "
                                      f"to replace the built-in provider, or choose another name")
        table[name] = row.spec
    register_models({row.spec.name: row.models for row in configured if row.models})
    return table


def _builtin_rows(settings: Settings) -> dict[str, ProviderSpec]:
    hf_generate = HF_TGI_GENERATE if settings.huggingface_text_generation_api == "tgi" else HF_CHAT
    models_service = settings.models_service_url
    return {
        "openai": ProviderSpec(
            name="openai",
            display_name="OpenAI",
            description="OpenAI GPT and reasoning models, or any OpenAI-compatible server at OPENAI_BASE_URL",
            operations=dict([
                _op("chat.completions", "chat", OPENAI_CHAT, "Chat Completions API", streaming=True),
                _op("image.description", "vision", OPENAI_CHAT, "Describe an image (chat with image parts)",
                    streaming=True),
                _op("responses", "responses", OPENAI_RESPONSES, "Responses API"),
                _op("embeddings", "embeddings", OPENAI_EMBEDDINGS, "Embeddings API"),
            ]),
            adapter=OpenAIAdapter(settings.openai_base_url, settings.openai_organization),
            base_url=settings.openai_base_url,
            credential_env=("OPENAI_API_KEY",),
            default_model="gpt-4o-mini",
        ),
        "anthropic": ProviderSpec(
            name="anthropic",
            display_name="Anthropic",
            description="Anthropic Claude models with advanced reasoning and long context",
            operations=dict([
                _op("chat.completions", "chat", ANTHROPIC_MESSAGES, "Messages API, OpenAI-style request",
                    streaming=True),
                _op("messages", "chat", ANTHROPIC_MESSAGES, "Messages API", streaming=True),
                _op("image.description", "vision", ANTHROPIC_MESSAGES, "Describe an image (Messages API)",
                    streaming=True),
            ]),
            adapter=AnthropicAdapter(settings.anthropic_base_url, settings.anthropic_version,
                                     settings.anthropic_default_max_tokens),
            base_url=settings.anthropic_base_url,
            credential_env=("ANTHROPIC_API_KEY",),
            default_model="claude-sonnet-5",
        ),
        "huggingface": ProviderSpec(
            name="huggingface",
            display_name="Hugging Face",
            description="Hugging Face Inference router, TGI and TEI servers",
            operations=dict([
                _op("chat.completions", "chat", HF_CHAT, "Chat completion (router / TGI Messages API)",
                    streaming=True),
                _op("text.generation", "generate", hf_generate, "Text generation (chat or TGI /generate)",
                    streaming=True),
                _op("image.description", "vision", HF_CHAT, "Describe an image with a vision model",
                    streaming=True),
                _op("embeddings", "embeddings", HF_EMBEDDINGS, "Feature extraction (hf-inference / TEI / OpenAI)"),
            ]),
            adapter=HuggingFaceAdapter(settings.huggingface_base_url, settings.huggingface_text_generation_api,
                                       settings.huggingface_embeddings_api),
            base_url=settings.huggingface_base_url,
            credential_env=("HUGGINGFACE_API_KEY", "HF_TOKEN"),
            default_model="meta-llama/Llama-3.2-3B-Instruct",
        ),
        "symbia-labs": ProviderSpec(
            name="symbia-labs",
            display_name="Symbia Labs",
            description="Local models served by the Symbia Models service (MODELS_SERVICE_URL)",
            operations=dict([
                _op("chat.completions", "chat", SYMBIA_LABS_CHAT, "Chat completion on a local model",
                    streaming=True),
                # The original adapter's name for the same call (reported by its /capabilities).
                _op("completions", "chat", SYMBIA_LABS_CHAT, "Alias of chat.completions", streaming=True),
                _op("embeddings", "embeddings", SYMBIA_LABS_EMBEDDINGS, "Embeddings from a local model"),
            ]),
            adapter=OpenAIAdapter(f"{models_service}/v1", name="symbia-labs", auth=NO_AUTH,
                                  headers={"x-service-auth": "internal"}, max_tokens_field="max_tokens",
                                  developer_as_system=True, chat_metadata={"local": True},
                                  stream_usage=False),   # only the original's `stream` field is sent
            base_url=models_service,
            credential_env=(),
            needs_credential=False,
            health_url=f"{models_service}/health",
            models_url=f"{models_service}/v1/models",
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
