"""Backoff between attempts: exponential with jitter, or the upstream's Retry-After when it
gives one (never shorter), within a cap; the caller's deadline decides whether there is time."""

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from `Retry-After` (delta seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


# A retry is worth it only if, after its wait, the caller's deadline leaves at least this long.
MIN_ATTEMPT_S = 0.1


def fits(remaining_s: float | None, delay_s: float) -> bool:
    """Whether a retry after `delay_s` still has time before the deadline (None: no deadline)."""
    return remaining_s is None or remaining_s - delay_s >= MIN_ATTEMPT_S


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0

    def delay(self, retry: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retry number `retry` (1-based), from the upstream's
        `retry-after-ms` (OpenAI's precise form) or `Retry-After` when it sent one; None: do not
        retry, because it asks for a longer wait than INTEGRATIONS_RETRY_MAX_DELAY_S allows."""
        asked = upstream_wait(headers)
        if asked is not None:
            if asked > self.max_delay_s:
                return None
            return asked + random.uniform(0, min(0.1 * asked, 0.25))  # never earlier than asked
        backoff = min(self.base_delay_s * 2 ** (retry - 1), self.max_delay_s)
        return random.uniform(backoff / 2, backoff)                   # "equal jitter"


def upstream_wait(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))
