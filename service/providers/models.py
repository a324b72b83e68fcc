"""Facts about model ids that change how a request must be built."""

# OpenAI reasoning models reject `max_tokens` and a non-default temperature; they take
# `max_completion_tokens` instead (reference §14 item 5).
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_NON_REASONING = ("gpt-5-chat",)


def is_reasoning_model(model: str) -> bool:
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(_REASONING_PREFIXES) and not name.startswith(_NON_REASONING)
