"""Resilience without the bus: the breaker state machine, failure classification, backoff,
token-bucket arithmetic, deadlines, names, and the in-process breaker (no NATS)."""

import time

import pytest

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.resilience.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerPolicy,
    Circuit,
    Verdict,
    admit,
    after_failure,
    after_success,
    claim_probe,
)
from service.resilience.breakers import Breakers, RateWindow
from service.resilience.buckets import Level, wait_for
from service.resilience.deadline import Deadline
from service.resilience.failures import health_failure, retryable_failure
from service.resilience.names import integration_circuit, provider_circuit, token, valid_circuit
from service.resilience.retry import RetryPolicy, parse_retry_after

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10, success_threshold=2, failure_rate=0)


def upstream(status: int, category: ErrorCategory, reason: str = Reason.UPSTREAM_ERROR) -> GatewayError:
    return GatewayError("x", category, status=status, reason=reason, upstream_status=status)


def test_closed_opens_after_consecutive_failures_and_a_success_resets_the_count():
    c = Circuit()
    for _ in range(2):
        c, _ = after_failure(c, POLICY, probe=False, now=100)
    assert c.state == CLOSED and c.failures == 2
    c, reason = after_success(c, POLICY, probe=False)
    assert c.failures == 0 and reason == "success"
    assert after_success(c, POLICY, probe=False) is None          # nothing to write on the hot path
    for _ in range(3):
        c, reason = after_failure(c, POLICY, probe=False, now=100)
    assert c.state == OPEN and reason == "threshold" and c.opened_at == 100


def test_open_rejects_until_the_cooldown_then_admits_a_single_probe():
    c = Circuit(state=OPEN, opened_at=100, failures=3)
    assert admit(c, POLICY, 105) is Verdict.REJECT and c.retry_after(POLICY, 105) == 5
    assert admit(c, POLICY, 110) is Verdict.PROBE
    probing, _ = claim_probe(c, POLICY, 110, hold_s=4)
    assert probing.state == HALF_OPEN and admit(probing, POLICY, 111) is Verdict.REJECT   # one probe at a time
    assert claim_probe(probing, POLICY, 111, 4) is None
    assert admit(probing, POLICY, 115) is Verdict.PROBE           # the probe's holder vanished: claim again
    one, _ = after_success(probing, POLICY, probe=True)
    assert one.state == HALF_OPEN and one.successes == 1 and admit(one, POLICY, 112) is Verdict.PROBE
    closed, reason = after_success(one, POLICY, probe=True)
    assert closed.state == CLOSED and reason == "probe_succeeded" and closed.failures == 0
    reopened, reason = after_failure(one, POLICY, probe=True, now=120)
    assert reopened.state == OPEN and reason == "probe_failed" and reopened.opened_at == 120


def test_late_answers_of_requests_admitted_before_the_change_are_ignored():
    c = Circuit(state=OPEN, opened_at=100)
    assert after_success(c, POLICY, probe=False) is None
    assert after_failure(c, POLICY, probe=False, now=101) is None
    half = Circuit(state=HALF_OPEN, probe_until=200)
    assert after_failure(half, POLICY, probe=False, now=101) is None


def test_circuit_json_round_trip():
    c = Circuit(state=HALF_OPEN, failures=3, successes=1, opened_at=1.5, probe_until=2.5, last_failure=1.5,
                provider="openai", credential_id="cred-1", org="acme")
    assert Circuit.from_json(c.to_json()) == c


@pytest.mark.parametrize(("exc", "health", "retry"), [
    (upstream(502, ErrorCategory.provider), True, True),
    (upstream(503, ErrorCategory.provider, Reason.UPSTREAM_OVERLOADED), True, True),
    (upstream(504, ErrorCategory.timeout, Reason.UPSTREAM_TIMEOUT), True, True),
    (GatewayError("x", ErrorCategory.network, reason=Reason.UPSTREAM_UNREACHABLE), True, True),
    (upstream(429, ErrorCategory.rate_limit), False, True),                 # throttled, not unhealthy
    (upstream(400, ErrorCategory.validation), False, False),
    (upstream(404, ErrorCategory.validation, Reason.MODEL_NOT_FOUND), False, False),
    (upstream(502, ErrorCategory.auth, Reason.PROVIDER_REJECTED_CREDENTIALS), False, False),
    (upstream(402, ErrorCategory.quota), False, False),
    (GatewayError("x", ErrorCategory.network, status=499, reason=Reason.CLIENT_DISCONNECTED), False, False),
    (GatewayError("x", ErrorCategory.provider, reason=Reason.UPSTREAM_INVALID_RESPONSE), False, False),
    (GatewayError("x", ErrorCategory.rate_limit, status=429, reason=Reason.RATE_LIMIT_ORG_REQUESTS), False, False),
    (GatewayError("x", ErrorCategory.provider, status=503, reason=Reason.CIRCUIT_OPEN), False, False),
    (ValueError("a bug"), False, False),
])
def test_what_counts_against_a_circuit_and_what_is_retried(exc, health, retry):
    assert health_failure(exc) is health and retryable_failure(exc) is retry


def test_backoff_honours_retry_after_and_its_cap():
    policy = RetryPolicy(max_retries=3, base_delay_s=0.2, max_delay_s=5)
    assert 2.0 <= policy.delay(1, {"retry-after": "2"}) <= 2.25          # never earlier than asked
    assert 0.3 <= policy.delay(1, {"retry-after": "1", "retry-after-ms": "300"}) <= 0.33   # the precise one
    assert policy.delay(1, {"retry-after": "30"}) is None                # longer than allowed: no retry
    for retry, ceiling in ((1, 0.2), (2, 0.4), (3, 0.8), (9, 5)):
        assert ceiling / 2 <= policy.delay(retry) <= ceiling
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < parse_retry_after(future) <= 60


def test_token_bucket_arithmetic():
    level = Level(10.0, at=1000.0)
    assert level.now(60, 1000.0) == 10 and level.now(60, 1005.0) == 15        # one token a second
    assert level.now(60, 2000.0) == 60                                        # capped at the limit
    assert Level(-30.0, 1000.0).now(60, 1010.0) == -20                        # a debt refills first
    assert wait_for(3, 60) == 3 and wait_for(1, 600) == 0.1


def test_deadline_sources_and_margin():
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    d = Deadline.of({"x-timeout-ms": "2000", "x-deadline": str(now_ms + 1000)}, started, 5000, margin_s=0.05)
    assert 0.9 < d.remaining() < 0.96                                         # the earliest, minus the margin
    assert Deadline.of({}, started) is None
    assert Deadline.of({}, started, body_timeout_ms=300).bound(10)[1] is True
    assert Deadline.of({"x-timeout-ms": "60000"}, started).bound(10) == (10, False)
    with pytest.raises(GatewayError) as err:
        Deadline.of({"x-deadline": str(now_ms - 1)}, started).check()
    assert err.value.status == 504 and err.value.reason == Reason.DEADLINE_EXCEEDED


def test_names_are_safe_kv_keys_and_subject_tokens():
    assert token("acme") == "acme" and token("org:acme") == "org=acme"
    assert token("user@example.com").startswith("h-") and valid_circuit(token("a.b*>"))
    assert provider_circuit("openai") == "openai"
    assert provider_circuit("openai", "cred 1").startswith("openai.c-")
    assert integration_circuit(None, "petstore") == "integration.petstore"
    assert integration_circuit("acme", "petstore") == "integration.acme.petstore"
    assert not valid_circuit("a.*") and not valid_circuit("") and not valid_circuit("a..b")
    assert Breakers(POLICY).provider_circuit("openai", "cred-1") == "openai"           # one per provider
    per_credential = Breakers(POLICY, per_credential=True)
    assert per_credential.provider_circuit("openai", "cred-1") == provider_circuit("openai", "cred-1")
    assert per_credential.provider_circuit("openai", None) == "openai"


async def test_breakers_work_within_one_process_without_nats():
    clock = [1000.0]
    breakers = Breakers(POLICY, clock=lambda: clock[0])
    failure = upstream(503, ErrorCategory.provider)
    for _ in range(3):
        admission = await breakers.admit("openai", provider="openai", hold_s=5)
        await breakers.finished(admission, failure)
    with pytest.raises(GatewayError) as err:
        await breakers.admit("openai", provider="openai", hold_s=5)
    assert err.value.status == 503 and err.value.reason == Reason.CIRCUIT_OPEN
    assert err.value.headers["retry-after"] == "10"
    assert breakers.snapshot("openai").state == OPEN
    clock[0] += 10
    probe = await breakers.admit("openai", provider="openai", hold_s=5)
    assert probe.probe
    with pytest.raises(GatewayError):                              # the probe is out: everyone else waits
        await breakers.admit("openai", provider="openai", hold_s=5)
    await breakers.finished(probe, upstream(400, ErrorCategory.validation))   # neither way: frees the probe
    probe = await breakers.admit("openai", provider="openai", hold_s=5)
    await breakers.finished(probe, None)
    probe = await breakers.admit("openai", provider="openai", hold_s=5)
    await breakers.finished(probe, None)
    assert breakers.snapshot("openai").state == CLOSED


async def test_failure_rate_rule_opens_a_circuit_without_consecutive_failures():
    breakers = Breakers(BreakerPolicy(failure_threshold=100, failure_rate=0.5, rate_min_requests=10))
    failure = upstream(500, ErrorCategory.provider)
    for i in range(10):
        assert breakers.circuit("hf") is None or breakers.circuit("hf").state == CLOSED
        admission = await breakers.admit("hf", provider="huggingface", hold_s=5)
        await breakers.finished(admission, failure if i % 2 else None)
    assert breakers.circuit("hf").state == OPEN                  # 5 of 10 failed, never 2 in a row


async def test_a_deadline_cut_and_a_disabled_breaker_count_nothing():
    breakers = Breakers(BreakerPolicy(failure_threshold=1, failure_rate=0))
    admission = await breakers.admit("openai", provider="openai", hold_s=1)
    await breakers.finished(admission, upstream(504, ErrorCategory.timeout, Reason.UPSTREAM_TIMEOUT), cut_short=True)
    assert breakers.circuit("openai") is None
    off = Breakers(POLICY, enabled=False)
    assert await off.admit("openai", provider="openai", hold_s=1) is None


def test_the_failure_rate_window_counts_recent_calls_in_constant_memory():
    window = RateWindow()
    for i in range(100_000):                       # 100k calls within one 60 s window
        window.add(1000 + i * 0.0005, failed=i % 4 == 0, window_s=60)
    assert window.calls == 100_000 and window.failures == 25_000
    assert len(window.slices) <= RateWindow.BUCKETS + 1
    window.add(1000 + 50 + 60, failed=False, window_s=60)    # 60 s after the last burst: all old slices gone
    assert window.calls == 1 and window.failures == 0
    window.add(1200, failed=True, window_s=60)
    window.add(1230, failed=False, window_s=60)
    assert (window.calls, window.failures) == (2, 1)      # both inside the last 60 s
    window.add(1262, failed=False, window_s=60)
    assert (window.calls, window.failures) == (2, 0)      # the failure at 1200 slid out
