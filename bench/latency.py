"""Latency of one execute at concurrency 1: directly to the mock upstream, over HTTP through
the gateway, and over NATS to the workers. Starts the mock and `symbia-integrations serve`
(embedded NATS, one worker, one api process) itself; everything on loopback, bounded loops.

    .venv/bin/python -m bench.latency [--requests 2000]
"""

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nats
import orjson

BODY = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                     "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}})
UPSTREAM_BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def timed(n: int, call) -> list[float]:
    for _ in range(min(200, n)):  # warm-up
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


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("serve exited during start-up")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    mock_port, http_port = free_port(), free_port()
    mock = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(mock_port)])
    work = tempfile.mkdtemp(prefix="bench-")
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": work, "INTEGRATIONS_PORT": str(http_port),
           "INTEGRATIONS_HOST": "127.0.0.1", "OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
           "OPENAI_API_KEY": "sk-bench", "INTEGRATIONS_API_KEYS": KEY,
           # one key sends thousands of requests a minute: no per-user limit (bench/resilience.py
           # measures what the limits cost)
           "INTEGRATIONS_RATE_LIMIT_ENABLED": "false"}
    env.pop("NATS_URL", None)
    log = Path(work) / "serve.log"
    serve = subprocess.Popen([str(bin_dir / "symbia-integrations"), "serve"], env=env, cwd=work,
                             stderr=log.open("w"))
    try:
        gateway = f"http://127.0.0.1:{http_port}"
        wait_ready(gateway, serve)
        nats_url = re.search(r"NATS: (nats://\S+)", log.read_text()).group(1)
        results = asyncio.run(measure(args.requests, f"http://127.0.0.1:{mock_port}", gateway, nats_url))
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        mock.terminate()
        mock.wait(10)
    direct_p50, _ = percentiles(results["direct"])
    print(f"{args.requests} sequential requests per path (aiohttp / nats-py client, after 200 warm-up)")
    print(f"{'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'added p50 ms':>13}")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        added = "" if name == "direct" else f"{p50 - direct_p50:13.2f}"
        print(f"{name:<8} {p50:8.2f} {p99:8.2f} {added}")


if __name__ == "__main__":
    main()
