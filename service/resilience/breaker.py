"""The circuit-breaker state machine, pure (no I/O): what a circuit's shared state becomes after
an admission, a success or a failure. service/resilience/breakers.py applies these transitions
to the KV bucket with compare-and-set, so every worker moves the same circuit the same way.

closed ──(N consecutive failures, or the failure rate)──► open ──(cool-down)──► half-open
half-open: one probe at a time; a failed probe reopens, M successful probes close.

Times are epoch seconds: the state is shared by processes that do not share a monotonic clock.
"""

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import orjson

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    success_threshold: int = 2
    failure_rate: float = 0.5          # 0: off
    rate_window_s: float = 60.0
    rate_min_requests: int = 20


@dataclass(frozen=True, slots=True)
class Circuit:
    """The shared state of one circuit (one KV value)."""

    state: str = CLOSED
    failures: int = 0                  # consecutive failures while closed
    successes: int = 0                 # successful probes while half-open
    opened_at: float = 0.0
    probe_until: float = 0.0           # half-open: a probe is in flight until then (0: none)
    last_failure: float = 0.0          # 0: never
    provider: str = ""                 # what the circuit protects, for status pages
    credential_id: str | None = None
    org: str | None = None

    def to_json(self) -> bytes:
        out: dict[str, Any] = {"state": self.state, "failures": self.failures, "successes": self.successes,
                               "openedAt": self.opened_at, "probeUntil": self.probe_until,
                               "lastFailure": self.last_failure, "provider": self.provider}
        if self.credential_id:
            out["credentialId"] = self.credential_id
        if self.org:
            out["org"] = self.org
        return orjson.dumps(out)

    @classmethod
    def from_json(cls, data: bytes) -> "Circuit":
        raw = orjson.loads(data)
        return cls(state=raw.get("state", CLOSED), failures=int(raw.get("failures", 0)),
                   successes=int(raw.get("successes", 0)), opened_at=float(raw.get("openedAt", 0)),
                   probe_until=float(raw.get("probeUntil", 0)), last_failure=float(raw.get("lastFailure", 0)),
                   provider=raw.get("provider", ""), credential_id=raw.get("credentialId"), org=raw.get("org"))

    def retry_after(self, policy: BreakerPolicy, now: float) -> float:
        """Seconds until this circuit lets a request through again (0: it would now)."""
        if self.state == OPEN:
            return max(0.0, self.opened_at + policy.cooldown_s - now)
        if self.state == HALF_OPEN and self.probe_until > now:
            return max(0.0, self.probe_until - now)
        return 0.0


class Verdict(Enum):
    ALLOW = "allow"        # closed: go
    PROBE = "probe"        # the caller may become the single probe (claim it first)
    REJECT = "reject"


def admit(circuit: Circuit, policy: BreakerPolicy, now: float) -> Verdict:
    if circuit.state == CLOSED:
        return Verdict.ALLOW
    if circuit.state == OPEN:
        return Verdict.PROBE if now >= circuit.opened_at + policy.cooldown_s else Verdict.REJECT
    return Verdict.PROBE if circuit.probe_until <= now else Verdict.REJECT


Transition = tuple[Circuit, str]       # (new state, reason for the event)


def claim_probe(circuit: Circuit, policy: BreakerPolicy, now: float, hold_s: float) -> Transition | None:
    """Become the one probe of a circuit whose cool-down is over (or whose last probe finished or
    was lost); `hold_s` bounds how long the claim stands if this worker dies mid-probe."""
    if admit(circuit, policy, now) is not Verdict.PROBE:
        return None
    successes = circuit.successes if circuit.state == HALF_OPEN else 0
    return replace(circuit, state=HALF_OPEN, successes=successes, probe_until=now + hold_s), "probe"


def after_success(circuit: Circuit, policy: BreakerPolicy, probe: bool) -> Transition | None:
    """None: nothing to write (the common case: a success on a closed circuit without failures)."""
    if circuit.state == CLOSED:
        return (replace(circuit, failures=0), "success") if circuit.failures else None
    if circuit.state == HALF_OPEN and probe:
        successes = circuit.successes + 1
        if successes >= policy.success_threshold:
            return replace(circuit, state=CLOSED, failures=0, successes=0, probe_until=0.0), "probe_succeeded"
        return replace(circuit, successes=successes, probe_until=0.0), "probe_succeeded"
    return None  # a late answer to a request admitted before the circuit opened: stale news


def after_failure(circuit: Circuit, policy: BreakerPolicy, probe: bool, now: float) -> Transition | None:
    if circuit.state == CLOSED:
        failures = circuit.failures + 1
        if failures >= policy.failure_threshold:
            return replace(circuit, state=OPEN, failures=failures, opened_at=now, last_failure=now), "threshold"
        return replace(circuit, failures=failures, last_failure=now), "failure"
    if circuit.state == HALF_OPEN and probe:
        return replace(circuit, state=OPEN, successes=0, probe_until=0.0, opened_at=now,
                       last_failure=now), "probe_failed"
    return None  # stale: the circuit already reacted


def trip(circuit: Circuit, now: float) -> Transition | None:
    """Open a closed circuit (the failure-rate rule)."""
    if circuit.state != CLOSED:
        return None
    return replace(circuit, state=OPEN, opened_at=now, last_failure=now), "failure_rate"
