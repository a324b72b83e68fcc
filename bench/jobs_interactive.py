"""Interactive latency while a large batch of jobs runs (docs/BENCHMARKS.md, "Jobs").

Starts the fast mock upstream and `symbia-integrations serve` (embedded NATS, one worker, one api
process), then measures sequential interactive executes (over NATS and over HTTP):

1. idle: nothing else running;
2. during a batch: right after `--jobs` executes were submitted with POST /api/integrations/jobs,
   while the worker runs them (INTEGRATIONS_JOB_CONCURRENCY slots), checking the batch is still
   running when the measurement ends.

    .venv/bin/python -m bench.jobs_interactive [--jobs 4000] [--requests 400] [--delay-ms 0]
                                               [--job-concurrency 16] [--yield-lag-ms 2]
"""

import argparse
import asyncio
import os
import time

import aiohttp
import nats
import orjson

from bench.latency import BODY, KEY, percentiles, timed
from bench.stack import served

JOB = orjson.loads(BODY)


async def measure(args, gateway: str, nats_url: str) -> dict:
    out: dict = {}
    nc = await nats.connect(nats_url)
    done: set[str] = set()
    last_result = [0.0]
    all_done = asyncio.Event()
    expected = [args.jobs]

    async def on_result(msg) -> None:
        done.add(msg.subject.rsplit(".", 1)[1])
        last_result[0] = time.perf_counter()
        if len(done) >= expected[0]:
            all_done.set()

    await nc.subscribe("integrations.v1.results.>", cb=on_result)
    async with aiohttp.ClientSession() as http:
        async def via_nats():
            msg = await nc.request("integrations.v1.execute", BODY, timeout=30, headers={"x-api-key": KEY})
            assert msg.headers["x-status"] == "200", msg.data

        async def via_http():
            async with http.post(f"{gateway}/api/integrations/execute", data=BODY,
                                 headers={"content-type": "application/json", "x-api-key": KEY}) as r:
                assert r.status == 200, await r.text()
                await r.read()

        await timed(200, via_nats, warmup=0)         # warm-up
        await timed(100, via_http, warmup=0)
        out["idle nats"], out["idle http"] = [], []
        for _ in range(args.requests):
            out["idle nats"] += await timed(1, via_nats, warmup=0)
            out["idle http"] += await timed(1, via_http, warmup=0)

        submitted = time.perf_counter()
        ids: list[str] = []
        for start in range(0, args.jobs, 1000):
            batch = orjson.dumps([{"request": JOB} for _ in range(min(1000, args.jobs - start))])
            async with http.post(f"{gateway}/api/integrations/jobs", data=batch,
                                 headers={"content-type": "application/json", "x-api-key": KEY}) as r:
                assert r.status == 202, await r.text()
                ids += [job["id"] for job in (await r.json())["jobs"]]
        out["submit_s"] = time.perf_counter() - submitted
        # Interleaved, so that both paths see the same phase of the batch.
        window_start, done_before = time.perf_counter(), len(done)
        out["busy nats"], out["busy http"] = [], []
        for _ in range(args.requests):
            out["busy nats"] += await timed(1, via_nats, warmup=0)
            out["busy http"] += await timed(1, via_http, warmup=0)
        window = time.perf_counter() - window_start
        out["jobs_in_window"] = len(done) - done_before
        out["window_s"] = window
        out["still_running"] = len(done) < len(ids)
        expected[0] = len(ids)
        await all_done.wait()
        out["batch_s"] = last_result[0] - submitted
    await nc.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--job-concurrency", type=int, default=16)
    parser.add_argument("--yield-lag-ms", type=float, default=None,
                        help="INTEGRATIONS_JOB_YIELD_LAG_MS (0 disables holding jobs back; default: the setting's)")
    args = parser.parse_args()
    env = {"INTEGRATIONS_JOB_CONCURRENCY": str(args.job_concurrency), "INTEGRATIONS_JOB_BATCH_MAX": "1000"}
    if args.yield_lag_ms is not None:
        env["INTEGRATIONS_JOB_YIELD_LAG_MS"] = str(args.yield_lag_ms)
    with served("bench-jobs-", env, mock_args=("--delay-ms", str(args.delay_ms))) as gw:
        out = asyncio.run(measure(args, gw.url, gw.nats_url))
    lag = "default" if args.yield_lag_ms is None else f"{args.yield_lag_ms:g} ms"
    print(f"upstream delay {args.delay_ms:g} ms, job slots {args.job_concurrency}, yield lag {lag}, {args.jobs} jobs, "
          f"{args.requests} sequential interactive requests per row, load avg {os.getloadavg()[0]:.2f}")
    print(f"{'interactive':<12} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("idle nats", "busy nats", "idle http", "busy http"):
        p50, p99 = percentiles(out[name])
        print(f"{name:<12} {p50:8.2f} {p99:8.2f}")
    print(f"submitted {args.jobs} jobs in {out['submit_s']:.2f} s; last result {out['batch_s']:.2f} s after "
          f"the first submit ({args.jobs / out['batch_s']:.0f} jobs/s); {out['jobs_in_window']} jobs finished "
          f"during the {out['window_s']:.1f} s busy window; batch still running at its end: {out['still_running']}")


if __name__ == "__main__":
    main()
