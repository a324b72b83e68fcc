"""Model metadata: facts about model ids that change how a request is built, and the data
table (context window, max output, capabilities, USD price per million tokens) that model
lists, capabilities and usage cost read. The table lives in models.json beside this file so
that prices can be updated without touching code."""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

# OpenAI reasoning models reject `max_tokens` and a non-default temperature; they take
# `max_completion_tokens` instead (reference §14 item 5).
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_NON_REASONING = ("gpt-5-chat",)


def is_reasoning_model(model: str) -> bool:
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(_REASONING_PREFIXES) and not name.startswith(_NON_REASONING)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    name: str
    provider: str
    capabilities: tuple[str, ...]          # chat, completion, embedding, vision, function_calling, reasoning
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_price: float | None = None       # USD per 1M prompt tokens
    output_price: float | None = None      # USD per 1M completion tokens
    deprecated: bool = False
    description: str | None = None
    default_max_tokens: int | None = None  # asked for when a request sets no maxTokens (Anthropic needs one)


@cache
def _table() -> dict[str, tuple[ModelInfo, ...]]:
    raw = json.loads((Path(__file__).with_name("models.json")).read_text())
    return {
        provider: tuple(ModelInfo(provider=provider, **{**m, "capabilities": tuple(m["capabilities"])})
                        for m in models)
        for provider, models in raw["providers"].items()
    }


# Models declared by configured providers (providers file, presets). They are registered when
# the capability table is built, because callers such as the usage pipeline ask by provider
# name only. A configured provider without models keeps what models.json says about its name.
_configured: dict[str, tuple[ModelInfo, ...]] = {}


def register_models(models_by_provider: Mapping[str, Iterable[ModelInfo]]) -> None:
    for provider, models in models_by_provider.items():
        _configured[provider] = tuple(models)


def models_for(provider: str) -> tuple[ModelInfo, ...]:
    """The static model list of a provider, in the original's order (UIs take the first)."""
    return _configured.get(provider) or _table().get(provider, ())


def model_info(provider: str, model: str) -> ModelInfo | None:
    for info in models_for(provider):
        if info.id == model:
            return info
    # Served ids often carry a date suffix (gpt-4o-mini-2024-07-18): match the longest prefix.
    candidates = [i for i in models_for(provider) if model.startswith(i.id + "-")]
    return max(candidates, key=lambda i: len(i.id)) if candidates else None


def cost_usd_micros(provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> int | None:
    """Estimated cost in millionths of a USD, or None when the model has no price."""
    info = model_info(provider, model)
    if info is None or info.input_price is None:
        return None
    # price per 1M tokens × tokens / 1M × 1M micros = price × tokens
    return round(info.input_price * prompt_tokens + (info.output_price or 0.0) * completion_tokens)


def describe(provider: str, model: str) -> ModelInfo:
    """Metadata for a model id a provider listed: the table's entry (a dated id inherits its
    base model's), else what the id itself tells (embedding, reasoning or chat)."""
    info = model_info(provider, model)
    if info is not None:
        return info if info.id == model else replace(info, id=model, name=model)
    if "embedding" in model or "embed" in model.rsplit("/", 1)[-1].lower():
        capabilities: tuple[str, ...] = ("embedding",)
    elif is_reasoning_model(model):
        capabilities = ("chat", "function_calling", "reasoning")
    else:
        capabilities = ("chat", "function_calling")
    return ModelInfo(id=model, name=model, provider=provider, capabilities=capabilities)
