"""Incremental server-sent events parser (the text/event-stream format of the WHATWG spec,
as LLM providers send it): feed it bytes as they arrive, get complete events back. Pure."""

from dataclasses import dataclass


@dataclass(slots=True)
class SseEvent:
    event: str | None
    data: str


class EventTooLarge(ValueError):
    pass


class SseDecoder:
    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._tail = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        lines = (self._tail + chunk).split(b"\n") if self._tail else chunk.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self._max:
            raise EventTooLarge("an upstream stream event is larger than the allowed response size")
        events: list[SseEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[SseEvent]:
        """At end of stream: a last event without its blank line still counts (some servers
        end that way); a half line does not."""
        events: list[SseEvent] = []
        if self._tail:
            self._line(self._tail, events)
            self._tail = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data, self._size = None, [], 0
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._size += len(value)
            if self._size > self._max:
                raise EventTooLarge("an upstream stream event is larger than the allowed response size")
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
