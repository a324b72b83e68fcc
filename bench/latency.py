"""Latency of one execute at concurrency 1: directly to the mock upstream, over HTTP through
the gateway, and over NATS to the workers. Starts the mock and `symbia-integrations serve`
(embedded NATS, one worker, one api process) itself; everything on loopback, bounded loops.

    .venv/bin/python -m bench.latency [--requests 2000]
"""

import argparse
import asyncio
import statistics
import time

import aiohttp
import nats
import orjson

from bench.stack import KEY, served

BODY = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                     "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}})
UPSTREAM_BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def timed(n: int, call, warmup: int = 200) -> list[float]:
    """Milliseconds of `n` sequential calls, after up to `warmup` unmeasured ones."""
    for _ in range(min(warmup, n)):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def measure(n: int, mock_url: str, gateway_url: str, nats_url: str) -> dict[str, list[float]]:
    results = {}
    async with aiohttp.ClientSession() as http:
        async def direct():
            async with http.post(f"{mock_url}/v1/chat/completions", data=UPSTREAM_BODY,
                                 headers={"content-type": "application/json"}) as r:
                await r.read()

        async def via_http():
            async with http.post(f"{gateway_url}/api/integrations/execute", data=BODY,
                                 headers={"content-type": "application/json", "x-api-key": KEY}) as r:
                assert r.status == 200, await r.text()
                await r.read()

        results["direct"] = await timed(n, direct)
        results["http"] = await timed(n, via_http)
    nc = await nats.connect(nats_url)

    async def via_nats():
        msg = await nc.request("integrations.v1.execute", BODY, timeout=10, headers={"x-api-key": KEY})
        assert msg.headers["x-status"] == "200"

    results["nats"] = await timed(n, via_nats)
    await nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with served("bench-") as gw:
        results = asyncio.run(measure(args.requests, gw.mock_url, gw.url, gw.nats_url))
    direct_p50, _ = percentiles(results["direct"])
    print(f"{args.requests} sequential requests per path (aiohttp / nats-py client, after 200 warm-up)")
    print(f"{'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'added p50 ms':>13}")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        added = "" if name == "direct" else f"{p50 - direct_p50:13.2f}"
        print(f"{name:<8} {p50:8.2f} {p99:8.2f} {added}")


if __name__ == "__main__":
    main()
