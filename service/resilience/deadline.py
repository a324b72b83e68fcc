"""The caller's deadline: from `x-deadline` (epoch ms, set by the HTTP adapter from X-Timeout-Ms),
`x-timeout-ms` (a bus caller's budget from when the worker took the request) or a body `timeout`;
the earliest wins. Upstream timeouts, backoff waits and retries all fit inside it, minus a small
margin to carry the reply back, so no layer waits longer than the caller."""

import time
from collections.abc import Mapping

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError


class Deadline:
    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at                         # time.monotonic() value

    @classmethod
    def of(cls, headers: Mapping[str, str], started: float, body_timeout_ms: int | None = None,
           margin_s: float = 0.0) -> "Deadline | None":
        """`started`: time.perf_counter() when the worker took the request (Command.started)."""
        candidates = []
        offset = time.monotonic() - time.perf_counter()      # Command.started is a perf_counter value
        absolute = headers.get(h.DEADLINE)
        if absolute and absolute.isdigit():
            candidates.append(time.monotonic() + int(absolute) / 1000 - time.time())
        relative = headers.get(h.TIMEOUT_MS)
        if relative and relative.isdigit():
            candidates.append(started + offset + int(relative) / 1000)
        if body_timeout_ms:
            candidates.append(started + offset + body_timeout_ms / 1000)
        if not candidates:
            return None
        return cls(min(candidates) - margin_s)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def bound(self, timeout_s: float) -> tuple[float, bool]:
        """(the timeout to use, whether the deadline cut it short): an attempt cut short by the
        caller's budget says nothing about the upstream's health."""
        remaining = self.remaining()
        if remaining < timeout_s:
            return remaining, True
        return timeout_s, False

    def check(self, what: str = "the request") -> None:
        if self.remaining() <= 0:
            raise deadline_exceeded(what)


def deadline_exceeded(what: str = "the request", provider: str | None = None) -> GatewayError:
    return GatewayError(f"The caller's deadline passed before {what} could finish", ErrorCategory.timeout,
                        status=504, reason=Reason.DEADLINE_EXCEEDED, provider=provider)


def bounded(timeout_s: float, deadline: Deadline | None) -> tuple[float, bool]:
    return deadline.bound(timeout_s) if deadline is not None else (timeout_s, False)
