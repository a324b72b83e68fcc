"""What the gateway adds to a streamed completion, over HTTP at concurrency 1: time to first
content byte (TTFB) and the cost per chunk. Starts the bench mock upstream and
`symbia-integrations serve` (embedded NATS, one worker, one api process) itself; loopback only.

* TTFB: request sent → first byte of the first content delta; a 20-token stream. Directly to
  the mock, through the gateway's SSE execute route and through its /v1/chat/completions,
  round-robin.
* per chunk: a stream of `--chunks` one-token chunks sent back to back by the mock; the extra
  total time through the gateway divided by the number of chunks (upstream read and decode,
  NATS message, ack, SSE write: everything a chunk costs on the path).

    .venv/bin/python -m bench.streaming [--requests 500] [--chunks 500] [--streams 30]
"""

import argparse
import asyncio
import re
import time

import aiohttp
import orjson

from bench.latency import KEY, percentiles
from bench.stack import served

CONTENT = re.compile(rb'"content":"[^"]')
MESSAGES = [{"role": "user", "content": "hi"}]


def bodies(tokens: int) -> dict[str, bytes]:
    params = {"model": "gpt-4o-mini", "messages": MESSAGES, "maxTokens": tokens}
    return {
        "direct": orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": tokens, "stream": True,
                                "stream_options": {"include_usage": True}}),
        "execute": orjson.dumps({"provider": "openai", "operation": "chat.completions", "params": params,
                                 "stream": True}),
        "v1": orjson.dumps({"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": tokens,
                            "stream": True, "stream_options": {"include_usage": True}}),
    }


async def one_stream(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    """(seconds to the first content byte, seconds to the end of the stream)."""
    start = time.perf_counter()
    first = 0.0
    buffer = b""
    async with http.post(url, data=body, headers={"content-type": "application/json", "x-api-key": KEY,
                                                  "authorization": f"Bearer {KEY}"}) as response:
        assert response.status == 200, await response.text()
        async for data in response.content.iter_any():
            if not first:
                buffer += data
                if CONTENT.search(buffer):
                    first = time.perf_counter() - start
        assert b"[DONE]" in data or b"event: done" in data, data[-200:]
    return first, time.perf_counter() - start


async def measure(n: int, chunks: int, streams: int, mock: str, gateway: str) -> dict[str, dict]:
    """Paths are measured round-robin (direct, execute, v1, direct, ...) so that all three see the
    same load; on a shared machine that matters more than the number of samples."""
    urls = {"direct": f"{mock}/v1/chat/completions", "execute": f"{gateway}/api/integrations/execute",
            "v1": f"{gateway}/v1/chat/completions"}
    results: dict[str, dict] = {name: {"ttfb": [], "long": []} for name in urls}
    short, long = bodies(20), bodies(chunks)
    async with aiohttp.ClientSession() as http:
        for _ in range(min(100, n)):  # warm-up
            for name, url in urls.items():
                await one_stream(http, url, short[name])
        for _ in range(n):
            for name, url in urls.items():
                results[name]["ttfb"].append((await one_stream(http, url, short[name]))[0] * 1000)
        for _ in range(streams):
            for name, url in urls.items():
                results[name]["long"].append((await one_stream(http, url, long[name]))[1] * 1000)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--streams", type=int, default=30)
    args = parser.parse_args()
    with served("bench-stream-") as gw:
        results = asyncio.run(measure(args.requests, args.chunks, args.streams, gw.mock_url, gw.url))
    direct_ttfb, _ = percentiles(results["direct"]["ttfb"])
    direct_long, _ = percentiles(results["direct"]["long"])
    print(f"TTFB: {args.requests} sequential 20-token streams per path; per chunk: {args.streams} streams of "
          f"{args.chunks} chunks (aiohttp client, after warm-up)")
    print(f"{'path':<28} {'TTFB p50':>9} {'p99':>7} {'added p50':>10} {'stream p50':>11} {'added/chunk':>12}")
    labels = {"direct": "direct to the mock", "execute": "POST /execute stream:true", "v1": "POST /v1/chat/completions"}
    for name, result in results.items():
        p50, p99 = percentiles(result["ttfb"])
        long_p50, _ = percentiles(result["long"])
        added = "" if name == "direct" else f"{p50 - direct_ttfb:7.2f} ms"
        per_chunk = "" if name == "direct" else f"{(long_p50 - direct_long) / args.chunks * 1000:8.1f} µs"
        print(f"{labels[name]:<28} {p50:6.2f} ms {p99:7.2f} {added:>10} {long_p50:8.1f} ms {per_chunk:>12}")


if __name__ == "__main__":
    main()
