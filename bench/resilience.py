"""What the rate limits and circuit breakers cost per request (docs/BENCHMARKS.md, "Resilience").

1. The checks alone, as the execute pipeline makes them for one chat completion: the caller's
   user and org buckets (requests and tokens), the provider's buckets, the circuit admission and
   its success report, the settlement of the token reservation. Two limiters ("two workers"),
   each with its own NATS connection, share the buckets on a private nats-server; requests
   alternate between them and spread over `--users` users of one org. The limits (LIMITS) refuse
   nothing in this run, so the numbers are the steady state: most checks are served from a lease,
   one in a lease's worth goes to NATS (compare-and-set of the KV key).
2. The same with a lease of one (every check goes to NATS): the slow path's cost.
3. End to end: an execute over NATS to a worker with resilience on and to one with it off
   (each on its own nats-server, same mock upstream), requests alternating; the p50 difference.

    .venv/bin/python -m bench.resilience [--requests 5000] [--users 50] [--e2e 2000]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import orjson

from bench.latency import free_port, percentiles
from contracts.execute import ExecuteParams
from service.auth.access import Caller
from service.auth.principal import Principal
from service.embedded_nats import EmbeddedNats
from service.resilience.breaker import BreakerPolicy
from service.resilience.breakers import Breakers
from service.resilience.core import token_estimate
from service.resilience.limits import LimitDefaults, RateLimiter
from service.resilience.policies import OrgPolicies

KEY = "bench-key"
PARAMS = ExecuteParams.model_validate({"model": "gpt-4o-mini", "maxTokens": 256,
                                       "messages": [{"role": "user", "content": "Summarize the meeting notes."}]})
BODY = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                     "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}})
# A production-like configuration that refuses nothing in this run: leases of 5% are 30 requests
# and 5 000 tokens of a user's bucket, 300 / 50 000 of the org's, 3 000 / 500 000 of the provider's.
LIMITS = LimitDefaults(user_rpm=600, org_rpm=6_000, user_tpm=100_000, org_tpm=1_000_000,
                       provider_rpm=lambda _p: 60_000, provider_tpm=lambda _p: 10_000_000)


async def checks(url: str, n: int, users: int, lease: float) -> tuple[list[float], int]:
    """Per-request cost of the pipeline's checks (ms), and how many requests went to NATS."""
    connections = [await nats.connect(url) for _ in range(2)]
    limiters, breakers = [], []
    for nc in connections:
        limiter = RateLimiter(LIMITS, OrgPolicies(), lease_fraction=lease, lease_ttl_s=1.0)
        await limiter.start(nc)
        limiters.append(limiter)
        breaker = Breakers(BreakerPolicy())
        await breaker.start(nc)
        breakers.append(breaker)
    run = time.monotonic_ns()
    callers = [Caller(Principal(id=f"user-{i}", type="user", organizations=(f"bench-{run}",)), f"bench-{run}")
               for i in range(users)]
    samples, slow = [], 0
    try:
        for i in range(n + 500):
            limiter, breaker, caller = limiters[i % 2], breakers[i % 2], callers[i % users]
            writes = sum(b.revision for b in limiter._buckets.values())
            start = time.perf_counter()
            estimate = token_estimate("chat.completions", PARAMS)
            permit = await limiter.acquire(limiter.caller_limits(caller, tokens=True), estimate)
            provider_permit = await limiter.acquire(limiter.provider_limits(f"openai-{run}", tokens=True), estimate)
            admission = await breaker.admit("openai", provider="openai", hold_s=120)
            await breaker.finished(admission, None)
            limiter.settle(permit, 40)
            limiter.settle(provider_permit, 40)
            elapsed = (time.perf_counter() - start) * 1000
            if i >= 500:                                   # after a warm-up
                samples.append(elapsed)
                slow += sum(b.revision for b in limiter._buckets.values()) != writes
    finally:
        for limiter in limiters:
            await limiter.close()
        for breaker in breakers:
            await breaker.close()
        for nc in connections:
            await nc.close()
    return samples, slow


async def end_to_end(n: int, mock_port: int) -> dict[str, list[float]]:
    """Alternating executes to a worker with resilience on and one with it off."""
    from handlers.app import build_app
    from service.settings import Settings

    servers, apps, clients = [], {}, {}
    try:
        await asyncio.sleep(1.0)
        for name, on in (("on", True), ("off", False)):
            server = EmbeddedNats(Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "js")
            url = server.start()
            servers.append(server)
            settings = Settings(_env_file=None, nats_url=url, data_dir=Path(tempfile.mkdtemp()), api_keys=KEY,
                                openai_base_url=f"http://127.0.0.1:{mock_port}/v1", openai_api_key="sk-bench",
                                breaker_enabled=on, rate_limit_enabled=on, retry_max_retries=2,
                                rate_limit_user_rpm=600_000, rate_limit_org_rpm=6_000_000,
                                rate_limit_provider_rpm=6_000_000, rate_limit_user_tpm=60_000_000,
                                rate_limit_org_tpm=600_000_000, rate_limit_provider_tpm=600_000_000,
                                log_level="WARNING")
            apps[name] = build_app(settings)
            await apps[name].start()
            clients[name] = await nats.connect(url)
        results: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(n + 200):
            for name in ("on", "off") if i % 2 else ("off", "on"):
                start = time.perf_counter()
                msg = await clients[name].request("integrations.v1.execute", BODY, timeout=10,
                                                  headers={"x-api-key": KEY})
                elapsed = (time.perf_counter() - start) * 1000
                assert msg.headers["x-status"] == "200", msg.data
                if i >= 200:
                    results[name].append(elapsed)
        return results
    finally:
        for client in clients.values():
            await client.close()
        for app in apps.values():
            await app.stop()
        for server in servers:
            server.stop()


async def main(args: argparse.Namespace) -> None:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="bench-resilience-")) / "js")
    url = server.start()
    try:
        print(f"checks per request: user+org+provider buckets (requests, tokens), circuit, settlement; "
              f"{args.requests} requests alternating over 2 limiters, {args.users} users")
        print(f"{'lease':<22} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'to NATS':>8}")
        for label, lease in (("5% (default)", 0.05), ("one token (no lease)", 0.0)):
            samples, slow = await checks(url, args.requests, args.users, lease)
            ordered = sorted(samples)
            p50, p99 = percentiles(samples)
            p90 = ordered[int(len(ordered) * 0.9)]
            print(f"{label:<22} {p50:8.3f} {p90:8.3f} {p99:8.3f} {statistics.fmean(samples):8.3f} "
                  f"{slow / len(samples):8.1%}")
    finally:
        server.stop()
    if args.e2e:
        mock_port = free_port()
        mock = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(mock_port)])  # noqa: ASYNC220
        try:
            results = await end_to_end(args.e2e, mock_port)
        finally:
            mock.terminate()
            mock.wait(10)
        print(f"\nexecute over NATS to one worker, {args.e2e} requests each, alternating")
        print(f"{'resilience':<12} {'p50 ms':>8} {'p99 ms':>8}")
        for name in ("off", "on"):
            p50, p99 = percentiles(results[name])
            print(f"{name:<12} {p50:8.3f} {p99:8.3f}")
        print(f"added p50: {percentiles(results['on'])[0] - percentiles(results['off'])[0]:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--e2e", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
