"""Reading server-sent events the way a client does, and waiting for what workers report."""

import asyncio

import orjson


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of every event in an SSE body."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((name, "\n".join(data)))
    return events


def json_events(text: str) -> list[tuple[str | None, dict]]:
    return [(name, orjson.loads(data)) for name, data in parse_sse(text) if data != "[DONE]"]


async def wait_for(predicate, timeout_s: float = 5.0):
    """Poll until `predicate()` returns something truthy (records arrive after the reply)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
