"""CPU cost of the pure adapter work per request (build the upstream request, parse the answer),
for the same tool round-trip conversation on each adapter. No network.

    .venv/bin/python -m bench.adapters [--iterations 20000]
"""

import argparse
import time

from contracts.execute import ExecuteParams
from service.providers.capabilities import build_provider_table
from service.settings import Settings

PARAMS = {
    "model": "claude-haiku-4-5-20251001", "systemPrompt": "Be terse.", "maxTokens": 256,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Oslo?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3°C"},
    ],
}
ANSWERS = {
    "anthropic": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
                  "content": [{"type": "text", "text": "It is 3°C in Oslo."}], "stop_reason": "end_turn",
                  "stop_sequence": None, "usage": {"input_tokens": 40, "output_tokens": 9}},
    "chat": {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 3°C in Oslo."},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20000)
    n = parser.parse_args().iterations
    table = build_provider_table(Settings(_env_file=None))
    params = ExecuteParams.model_validate(PARAMS)
    for provider in ("openai", "anthropic", "symbia-labs", "mistral"):
        spec = table[provider]
        op = spec.operations["chat.completions"]
        answer = ANSWERS["anthropic" if provider == "anthropic" else "chat"]
        local = params.model_copy(update={"messages": params.messages[:1], "tools": None}) \
            if provider == "symbia-labs" else params  # what that provider accepts
        start = time.perf_counter()
        for _ in range(n):
            spec.adapter.build(op, local, "key")
            spec.adapter.parse(op, local, answer)
        print(f"{provider:12s} build+parse: {(time.perf_counter() - start) / n * 1e6:6.1f} µs per request")


if __name__ == "__main__":
    main()
