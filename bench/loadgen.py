"""Closed-loop load generator of `python -m bench`, in its own process(es), so that it does not
share an event loop (or, with --loadgen-procs 2, a core) with the harness or the gateway.

A job is a plain dict sent through a pipe; a process runs it on uvloop (when installed) with
aiohttp for HTTP and SSE and raw nats-py for NATS, and sends back the latencies, the error count
and its own CPU time, so the harness can show that the load generator is not the bottleneck.

Job fields:
    calls         list of call specs (below)
    concurrency   closed-loop callers (each sends its next request when the previous one ends)
    duration_s    measured time (throughput jobs), after warmup_s
    warmup_s      time before the measured window (requests complete but are not measured)
    requests      instead of duration_s: stop after this many requests (soak); all measured
    alternate     latency jobs at concurrency 1: `requests` rounds over all calls in turn after
                  `warmup_requests` rounds, so that direct and gateway see the same machine load
    nats_url      needed by NATS calls

Call spec: {"kind": "http"|"sse"|"nats", "url", "method", "body": bytes, "headers": {...}} or
{"kind": "nats", "subject", "body", "headers"}. A call succeeds on HTTP 200 / `x-status: 200`;
an SSE call's latency is the time to the first content delta (TTFB), then it reads to the end.
"""

import asyncio
import multiprocessing as mp
import multiprocessing.connection
import re
import time
from typing import Any

CONTENT = re.compile(rb'"content":"[^"]')
DONE = (b"[DONE]", b"event: done")


class CallFailed(Exception):
    pass


def _make_call(spec: dict, http, nc):
    kind = spec["kind"]
    body, headers = spec.get("body", b""), spec.get("headers", {})
    if kind == "http":
        method, url = spec.get("method", "POST"), spec["url"]

        async def call() -> float | None:
            async with http.request(method, url, data=body or None, headers=headers) as r:
                data = await r.read()
                if r.status != 200:
                    raise CallFailed(f"HTTP {r.status}: {data[:200]!r}")
            return None
        return call
    if kind == "sse":
        url = spec["url"]

        async def call() -> float | None:
            start = time.perf_counter()
            first, buffer, tail = None, b"", b""
            async with http.post(url, data=body, headers=headers) as r:
                if r.status != 200:
                    raise CallFailed(f"HTTP {r.status}: {(await r.read())[:200]!r}")
                async for data in r.content.iter_any():
                    if first is None:
                        buffer += data
                        if CONTENT.search(buffer):
                            first = time.perf_counter() - start
                    tail = (tail + data)[-8192:]  # the end event carries the whole result
            if first is None or not any(marker in tail for marker in DONE):
                raise CallFailed(f"stream without content or end: {tail[-120:]!r}")
            return first * 1000
        return call
    if kind == "nats":
        subject = spec["subject"]

        async def call() -> float | None:
            msg = await nc.request(subject, body, timeout=30, headers=headers)
            status = (msg.headers or {}).get("x-status")
            if status != "200":
                raise CallFailed(f"x-status {status}: {msg.data[:200]!r}")
            return None
        return call
    raise ValueError(f"unknown call kind {kind!r}")


async def run_job(job: dict, progress=None) -> dict[str, Any]:
    import aiohttp

    calls_spec = job["calls"]
    concurrency = max(1, int(job.get("concurrency", 1)))
    nc = None
    if any(c["kind"] == "nats" for c in calls_spec):
        import nats

        nc = await nats.connect(job["nats_url"], max_reconnect_attempts=0)
    connector = aiohttp.TCPConnector(limit=concurrency + 4, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    latencies: list[list[float]] = [[] for _ in calls_spec]
    state = {"errors": 0, "samples": [], "completed": 0}

    def failed(exc: BaseException) -> None:
        state["errors"] += 1
        if len(state["samples"]) < 5:
            state["samples"].append(f"{type(exc).__name__}: {exc}"[:300])

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        calls = [_make_call(c, http, nc) for c in calls_spec]
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        if job.get("alternate"):
            rounds = int(job.get("requests", 1000))
            for i in range(int(job.get("warmup_requests", 0)) + rounds):
                for idx, call in enumerate(calls):
                    start = time.perf_counter()
                    try:
                        ttfb = await call()
                    except Exception as exc:
                        failed(exc)
                        continue
                    state["completed"] += 1
                    if i >= int(job.get("warmup_requests", 0)):
                        latencies[idx].append(ttfb if ttfb is not None else (time.perf_counter() - start) * 1000)
            window = (wall_start, time.perf_counter(), cpu_start, time.process_time())
        else:
            window = await _closed_loop(job, calls, concurrency, latencies, state, failed, progress)
    if nc is not None:
        await nc.close()
    measured_wall = window[1] - window[0]
    measured = sum(len(x) for x in latencies)
    return {"latencies": latencies, "errors": state["errors"], "error_samples": state["samples"],
            "completed": state["completed"], "measured": measured, "wall_s": measured_wall,
            "rps": measured / measured_wall if measured_wall > 0 else 0.0,
            "cpu_s": window[3] - window[2]}


async def _closed_loop(job, calls, concurrency, latencies, state, failed, progress):
    call, out = calls[0], latencies[0]
    budget = job.get("requests")
    warmup_s = float(job.get("warmup_s", 0)) if budget is None else 0.0
    duration_s = float(job.get("duration_s", 5))
    now = time.perf_counter()
    marks = {"measure_from": now + warmup_s, "end": now + warmup_s + duration_s if budget is None else float("inf"),
             "cpu_from": None}
    remaining = [int(budget)] if budget is not None else None

    async def clock() -> None:
        await asyncio.sleep(max(0.0, marks["measure_from"] - time.perf_counter()))
        marks["cpu_from"] = (time.perf_counter(), time.process_time())

    async def worker() -> None:
        while True:
            if remaining is not None:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            if start >= marks["end"]:
                return
            try:
                ttfb = await call()
            except Exception as exc:
                failed(exc)
                await asyncio.sleep(0.01)  # no hot spin against a refusing peer
                continue
            end = time.perf_counter()
            state["completed"] += 1
            if progress is not None:
                progress.value += 1
            if marks["measure_from"] <= start and end <= marks["end"]:
                out.append(ttfb if ttfb is not None else (end - start) * 1000)

    clock_task = asyncio.create_task(clock())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await clock_task
    wall_from, cpu_from = marks["cpu_from"] or (time.perf_counter(), time.process_time())
    end = min(marks["end"], time.perf_counter())
    return wall_from, end, cpu_from, time.process_time()


def _process_main(conn, progress) -> None:
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            result = runner(run_job(job, progress))
        except Exception as exc:  # report, do not die: the harness prints it
            result = {"fatal": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


def split(total: int, parts: int) -> list[int]:
    """total split into `parts` near-equal non-negative integers (larger shares first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def merge(results: list[dict]) -> dict:
    """One result of several processes that ran the same job at the same time."""
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError("load generator failed: " + "; ".join(fatal))
    calls = len(results[0]["latencies"])
    return {
        "latencies": [[x for r in results for x in r["latencies"][i]] for i in range(calls)],
        "errors": sum(r["errors"] for r in results),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "completed": sum(r["completed"] for r in results),
        "measured": sum(r["measured"] for r in results),
        "wall_s": max(r["wall_s"] for r in results),
        "rps": sum(r["rps"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
        # CPU of the load generator while measuring, in % of one core (2 processes: up to 200 %)
        "cpu_pct": sum(r["cpu_s"] / r["wall_s"] * 100 for r in results if r["wall_s"] > 0),
    }


class LoadGen:
    """Long-lived load generator processes (spawned once: imports are not paid per step)."""

    def __init__(self, procs: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self._procs = []
        for _ in range(max(1, procs)):
            parent, child = ctx.Pipe()
            progress = ctx.Value("q", 0, lock=False)
            process = ctx.Process(target=_process_main, args=(child, progress), daemon=True, name="bench-loadgen")
            process.start()
            self._procs.append((process, parent, progress))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _, _ in self._procs]

    def progress(self) -> int:
        return sum(v.value for _, _, v in self._procs)

    def run(self, job: dict, on_tick=None, tick_s: float = 2.0) -> dict:
        """Run a job split over the processes (concurrency and request budget); on_tick() is
        called every tick_s seconds while it runs (RSS sampling)."""
        if job.get("alternate"):
            used = self._procs[:1]
            jobs = [job]
        else:
            used = self._procs[:max(1, min(len(self._procs), int(job.get("concurrency", 1))))]
            shares = split(int(job.get("concurrency", 1)), len(used))
            budgets = split(int(job["requests"]), len(used)) if job.get("requests") is not None else None
            jobs = [{**job, "concurrency": c, **({"requests": budgets[i]} if budgets else {})}
                    for i, c in enumerate(shares)]
        for (_, conn, _), part in zip(used, jobs, strict=True):
            conn.send(part)
        results: list[dict | None] = [None] * len(used)
        while any(r is None for r in results):
            for i, (process, conn, _) in enumerate(used):
                if results[i] is None and conn.poll(0 if on_tick else None):
                    results[i] = conn.recv()
                elif results[i] is None and not process.is_alive():
                    raise RuntimeError("a load generator process died")
            if any(r is None for r in results):
                if on_tick:
                    on_tick()
                mp.connection.wait([conn for (_, conn, _), r in zip(used, results, strict=True) if r is None],
                                   timeout=tick_s)
        return merge(results)

    def close(self) -> None:
        for _process, conn, _ in self._procs:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, _, _ in self._procs:
            process.join(5)
            if process.is_alive():
                process.terminate()
