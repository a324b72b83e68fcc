"""Token-bucket arithmetic, pure. A bucket holds at most `limit` tokens and refills at `limit`
per minute; a request (or an LLM token) takes one. The shared state is (level, time of level):
the level now is the old level plus what refilled since, capped at the limit. A level may go
below zero when a call used more tokens than it reserved: the debt delays later calls."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Level:
    tokens: float
    at: float                 # epoch seconds

    def now(self, limit: int, now: float) -> float:
        return min(float(limit), self.tokens + max(0.0, now - self.at) * limit / 60.0)


def full(limit: int, now: float) -> Level:
    return Level(float(limit), now)


def wait_for(missing: float, limit: int) -> float:
    """Seconds until `missing` more tokens have refilled."""
    return max(0.0, missing) * 60.0 / limit


def until_full(level: float, limit: int) -> float:
    return wait_for(limit - level, limit)
