"""Circuit breakers shared by every worker.

Each circuit is one key of the KV bucket `integrations-breakers`. Every worker watches the
bucket, so the decision to let a request through is a dictionary lookup; a transition (a counted
failure, opening, claiming the single half-open probe, closing) is a compare-and-set write of the
key, so exactly one worker makes it and publishes its event on
`integrations.v1.events.breaker.<name>`. When one worker opens a circuit, the others see it as
soon as the watch delivers the write (milliseconds on one NATS server).

Successes on a closed circuit with no failures write nothing: the hot path costs no I/O.
The failure-rate rule is evaluated per worker (its own calls within the window) and opens the
shared circuit; the consecutive-failure count is shared.

Without NATS (not started, or the bus failing) circuits still work within the process.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from contracts.resilience import BreakerEvent
from service.discovery import BreakerSnapshot
from service.errors import GatewayError
from service.kvwatch import WatchedBucket
from service.resilience.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    Circuit,
    Transition,
    Verdict,
    admit,
    after_failure,
    after_success,
    claim_probe,
    trip,
)
from service.resilience.failures import health_failure
from service.resilience.names import integration_circuit, provider_circuit

log = logging.getLogger("symbia.integrations.resilience")

_CAS_ATTEMPTS = 8
_PROBE_GRACE_S = 5.0


def iso(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Admission:
    """A request let through a circuit; report its outcome exactly once."""

    name: str
    probe: bool
    meta: Circuit | None = None          # what the circuit protects: written with its first state
    reported: bool = False


class RateWindow:
    """One worker's recent outcomes on one circuit, for the failure-rate rule: calls and failures
    counted in BUCKETS time slices of the window, so memory stays constant however many calls a
    second the circuit carries (a list of every call grew by ~10 MB per 100k calls a minute). The
    window slides one slice at a time: it covers between window_s * (1 - 1/BUCKETS) and window_s."""

    BUCKETS = 30
    __slots__ = ("calls", "failures", "slices")

    def __init__(self) -> None:
        self.slices: deque[list[float]] = deque()     # [slice start, calls, failures], oldest first
        self.calls = 0
        self.failures = 0

    def add(self, now: float, failed: bool, window_s: float) -> None:
        width = window_s / self.BUCKETS
        slices = self.slices
        start = now - now % width
        if not slices or slices[-1][0] != start:
            slices.append([start, 0, 0])
        current = slices[-1]
        current[1] += 1
        current[2] += failed
        self.calls += 1
        self.failures += failed
        limit = now - window_s
        while slices and slices[0][0] + width <= limit:
            _, calls, failures = slices.popleft()
            self.calls -= calls
            self.failures -= failures

    def clear(self) -> None:
        self.slices.clear()
        self.calls = 0
        self.failures = 0


def circuit_open(name: str, provider: str, retry_after_s: float) -> GatewayError:
    seconds = max(1, round(retry_after_s + 0.49))
    return GatewayError(f"{provider} is failing; its circuit breaker is open. Try again in {seconds}s.",
                        ErrorCategory.provider, status=503, retryable=True, reason=Reason.CIRCUIT_OPEN,
                        provider=provider, headers={"retry-after": str(seconds)})


class Breakers:
    """Implements discovery's BreakerView (`snapshot`)."""

    def __init__(self, policy: BreakerPolicy, *, enabled: bool = True, per_credential: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.enabled = enabled
        self.per_credential = per_credential
        self._clock = clock
        self._circuits: dict[str, tuple[Circuit, int]] = {}
        self._windows: dict[str, RateWindow] = {}
        self._bucket = WatchedBucket(KeyValueConfig(bucket=subjects.BREAKER_BUCKET, history=1,
                                                    description="circuit-breaker states"), self._on_update)
        self._nc: Client | None = None
        self._kv = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, nc: Client, replicas: int = 1) -> None:
        self._nc = nc
        self._kv = await self._bucket.start(nc, replicas)

    async def settled(self) -> None:
        """Wait for outcomes reported from synchronous code (`finished_soon`) to be written."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        await self._bucket.close()

    def _on_update(self, key: str, value: bytes | None, revision: int) -> None:
        current = self._circuits.get(key)
        if current is not None and revision < current[1]:
            return  # this worker already has a newer write of its own
        if value is None:
            self._circuits.pop(key, None)
            self._windows.pop(key, None)
        else:
            self._circuits[key] = (Circuit.from_json(value), revision)

    # --- names ----------------------------------------------------------------------------------

    def provider_circuit(self, provider: str, credential_id: str | None) -> str:
        return provider_circuit(provider, credential_id if self.per_credential else None)

    @staticmethod
    def integration_circuit(org: str | None, key: str) -> str:
        return integration_circuit(org, key)

    # --- the hot path ---------------------------------------------------------------------------

    async def admit(self, name: str, *, provider: str, hold_s: float, credential_id: str | None = None,
                    org: str | None = None) -> Admission | None:
        """Let a request through `name`, or raise the 503 `circuit_open` envelope. None when the
        breaker is disabled. `hold_s`: the request's own timeout (bounds a probe's claim)."""
        if not self.enabled:
            return None
        entry = self._circuits.get(name)
        if entry is None:
            return Admission(name, False, Circuit(provider=provider, credential_id=credential_id, org=org))
        circuit, now = entry[0], self._clock()
        verdict = admit(circuit, self.policy, now)
        if verdict is Verdict.ALLOW:
            return Admission(name, probe=False)
        if verdict is Verdict.PROBE:
            claimed = await self._transition(
                name, None, lambda c: claim_probe(c, self.policy, self._clock(), hold_s + _PROBE_GRACE_S))
            if claimed is not None:
                return Admission(name, probe=True)
            circuit = self._circuits.get(name, (circuit, 0))[0]   # another worker probes: what now?
            if admit(circuit, self.policy, self._clock()) is Verdict.ALLOW:
                return Admission(name, probe=False)
        raise circuit_open(name, provider, max(circuit.retry_after(self.policy, self._clock()), 1.0))

    async def succeeded(self, admission: Admission | None) -> None:
        if admission is None or admission.reported:
            return
        admission.reported = True
        name = admission.name
        entry = self._circuits.get(name)
        if not admission.probe:
            self._window(name, failed=False)
            if entry is None or not entry[0].failures:
                return
        await self._transition(name, admission.meta, lambda c: after_success(c, self.policy, admission.probe))

    async def finished(self, admission: Admission | None, exc: BaseException | None, *,
                       cut_short: bool = False) -> None:
        """The outcome of an admitted request: `exc` None is a success. A failure counts only when
        it says the provider is unhealthy and the caller's deadline did not cut the attempt short;
        other outcomes (a 400, an upstream 429, an abandoned stream) count neither way, but end a
        probe so that the next one can go."""
        if exc is None:
            await self.succeeded(admission)
            return
        if admission is None or admission.reported:
            return
        admission.reported = True
        if health_failure(exc) and not cut_short:
            await self._failed(admission)
        elif admission.probe:
            await self._transition(admission.name, None, _release_probe)

    def finished_soon(self, admission: Admission | None, exc: BaseException | None) -> None:
        """`finished` from synchronous code (the end of a stream)."""
        if admission is None or admission.reported:
            return
        task = asyncio.get_running_loop().create_task(self.finished(admission, exc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _failed(self, admission: Admission) -> None:
        name, now = admission.name, self._clock()
        done = await self._transition(name, admission.meta,
                                      lambda c: after_failure(c, self.policy, admission.probe, now))
        if admission.probe or (done is not None and done[0].state == OPEN):
            return
        window = self._window(name, failed=True)
        policy = self.policy
        if (window is not None and policy.failure_rate > 0 and window.calls >= policy.rate_min_requests
                and window.failures / window.calls >= policy.failure_rate):
            window.clear()
            await self._transition(name, admission.meta, lambda c: trip(c, self._clock()))

    def _window(self, name: str, *, failed: bool) -> RateWindow | None:
        if self.policy.failure_rate <= 0:
            return None
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = RateWindow()
        window.add(time.monotonic(), failed, self.policy.rate_window_s)
        return window

    # --- transitions ----------------------------------------------------------------------------

    async def _transition(self, name: str, meta: Circuit | None,
                          change: Callable[[Circuit], Transition | None]) -> Transition | None:
        """Apply `change` to the shared state of `name` with compare-and-set; None when `change`
        had nothing to do (or lost to another worker's write that made it moot)."""
        for _ in range(_CAS_ATTEMPTS):
            circuit, revision = self._circuits.get(name, (None, 0))
            base = circuit or meta or Circuit()
            result = change(base)
            if result is None:
                return None
            new, reason = result
            if self._kv is None:
                self._circuits[name] = (new, revision + 1)
            else:
                try:
                    if revision:
                        written = await self._kv.update(name, new.to_json(), last=revision)
                    else:
                        written = await self._kv.create(name, new.to_json())
                except KeyWrongLastSequenceError:
                    await self._refresh(name)
                    continue
                except Exception as exc:  # the bus is failing: decide locally rather than not at all
                    log.warning("circuit %s: shared state not writable (%r); applied in this worker only", name,
                                exc)
                    self._circuits[name] = (new, revision)
                    return result
                current = self._circuits.get(name)
                if current is None or written >= current[1]:
                    self._circuits[name] = (new, written)
            if new.state != base.state:
                await self._publish(name, base, new, reason)
            return result
        log.warning("circuit %s: gave up a transition after %d conflicting writes", name, _CAS_ATTEMPTS)
        return None

    async def _refresh(self, name: str) -> None:
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            self._circuits.pop(name, None)
            return
        current = self._circuits.get(name)
        if current is None or (entry.revision or 0) >= current[1]:
            self._circuits[name] = (Circuit.from_json(entry.value), entry.revision or 0)

    async def _publish(self, name: str, old: Circuit, new: Circuit, reason: str) -> None:
        if reason == "probe":
            reason = "cooldown_elapsed"
        if new.state == OPEN:
            log.warning("circuit %s opened (%s, %d consecutive failures)", name, reason, new.failures)
        else:
            log.info("circuit %s: %s -> %s (%s)", name, old.state, new.state, reason)
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        now = self._clock()
        event = BreakerEvent(name=name, provider=new.provider or old.provider or name, state=new.state,
                             previous=old.state, failures=new.failures, at=iso(now), reason=reason,
                             retryAfterS=round(new.retry_after(self.policy, now), 3) if new.state == OPEN else None)
        with contextlib.suppress(Exception):
            await nc.publish(f"{subjects.EVENTS_BREAKER}.{name}", event.model_dump_json(exclude_none=True).encode())

    # --- reads and resets -----------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def circuit(self, name: str) -> Circuit | None:
        entry = self._circuits.get(name)
        return entry[0] if entry else None

    def circuits(self) -> dict[str, Circuit]:
        return {name: circuit for name, (circuit, _) in self._circuits.items()}

    def snapshot(self, provider: str) -> BreakerSnapshot:
        circuit = self.circuit(provider_circuit(provider))
        if circuit is None:
            return BreakerSnapshot()
        now = self._clock()
        retry_after = circuit.retry_after(self.policy, now) if circuit.state != CLOSED else None
        return BreakerSnapshot(state=circuit.state, failures=circuit.failures, last_failure=iso(circuit.last_failure),
                               retry_after_s=retry_after)

    async def reset(self, name: str) -> bool:
        """Forget a circuit (closed, no failures). False when there was nothing to reset."""
        entry = self._circuits.pop(name, None)
        self._windows.pop(name, None)
        if self._kv is not None:
            with contextlib.suppress(KeyNotFoundError):
                await self._kv.delete(name)
        if entry is None:
            return False
        circuit = entry[0]
        if circuit.state != CLOSED:
            await self._publish(name, circuit, Circuit(provider=circuit.provider), "reset")
        return True

    async def reset_all(self) -> int:
        names = set(self._circuits)
        if self._kv is not None:
            with contextlib.suppress(Exception):
                names.update(await self._kv.keys())
        for name in names:
            await self.reset(name)
        return len(names)


def _release_probe(circuit: Circuit) -> Transition | None:
    if circuit.state != HALF_OPEN or not circuit.probe_until:
        return None
    return replace(circuit, probe_until=0.0), "probe_released"
