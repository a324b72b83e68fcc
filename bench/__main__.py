"""`make bench` / `python -m bench`: the gateway's latency, throughput, CPU per request and memory
in one run, against the targets of issue 9; `make soak` / `--soak N`: RSS over N requests.

Starts the bench mock upstream, a nats-server (JetStream in a temp dir), `symbia-integrations api`
and `--workers` `symbia-integrations worker` processes, and a closed-loop load generator in its
own process(es) (bench/loadgen.py). Everything on loopback; see docs/BENCHMARKS.md for the method.

    .venv/bin/python -m bench [--quick] [--scenarios direct,http,nats,embeddings,stream,invoke,usage]
                              [--duration 3] [--steps 1,4,16,32,64] [--requests 2000] [--workers 1]
                              [--upstream-delay-ms 0] [--loadgen-procs 1] [--json out.json]
    .venv/bin/python -m bench --soak 100000 [--soak-concurrency 16] [--json out.json]
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench import stats
from bench.loadgen import LoadGen
from bench.stack import KEY, Gateway, Mock, free_port, wait_http

SCENARIOS = ("direct", "http", "nats", "embeddings", "stream", "invoke", "usage", "peer")
TARGETS = {
    "http": {"added_p50_ms": 2.0, "rps": 1000.0},
    "nats": {"added_p50_ms": 1.0, "rps": 2000.0},
    "idle_worker_rss_mb": 150.0,
}

MESSAGES = [{"role": "user", "content": "hi"}]
JSON_HEADERS = {"content-type": "application/json"}
GATEWAY_HEADERS = {"content-type": "application/json", "x-api-key": KEY}


def _execute(operation: str, params: dict, stream: bool = False) -> bytes:
    return orjson.dumps({"provider": "openai", "operation": operation, "params": params,
                         **({"stream": True} if stream else {})})


def calls(mock: str, gateway: str) -> dict[str, dict]:
    """The call specs of every scenario (bench/loadgen.py): gateway side and direct counterpart."""
    chat = {"model": "gpt-4o-mini", "messages": MESSAGES}
    embed = {"model": "text-embedding-3-small", "input": "hi"}
    execute_url = f"{gateway}/api/integrations/execute"
    return {
        "direct": {"kind": "http", "url": f"{mock}/v1/chat/completions", "body": orjson.dumps(chat),
                   "headers": JSON_HEADERS},
        "http": {"kind": "http", "url": execute_url, "body": _execute("chat.completions", chat),
                 "headers": GATEWAY_HEADERS},
        "nats": {"kind": "nats", "subject": "integrations.v1.execute", "body": _execute("chat.completions", chat),
                 "headers": {"x-api-key": KEY}},
        "direct-embeddings": {"kind": "http", "url": f"{mock}/v1/embeddings", "body": orjson.dumps(embed),
                              "headers": JSON_HEADERS},
        "embeddings": {"kind": "http", "url": execute_url, "body": _execute("embeddings", embed),
                       "headers": GATEWAY_HEADERS},
        "direct-stream": {"kind": "sse", "url": f"{mock}/v1/chat/completions", "headers": JSON_HEADERS,
                          "body": orjson.dumps({**chat, "max_tokens": 20, "stream": True,
                                                "stream_options": {"include_usage": True}})},
        "stream": {"kind": "sse", "url": execute_url, "headers": GATEWAY_HEADERS,
                   "body": _execute("chat.completions", {**chat, "maxTokens": 20}, stream=True)},
        "direct-invoke": {"kind": "http", "method": "GET", "url": f"{mock}/ops/ping", "headers": {}},
        "invoke": {"kind": "http", "url": f"{gateway}/api/integrations/invoke",
                   "body": orjson.dumps({"operation": "benchmock.ping"}), "headers": GATEWAY_HEADERS},
    }


# scenario → (direct counterpart for the added latency, throughput steps?, label)
PLAN = {
    "http": ("direct", True, "execute chat over HTTP"),
    "nats": ("direct", True, "execute chat over NATS"),
    "embeddings": ("direct-embeddings", True, "execute embeddings over HTTP"),
    "stream": ("direct-stream", False, "stream over HTTP SSE (TTFB)"),
    "invoke": ("direct-invoke", True, "invoke OpenAPI op over HTTP"),
}


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict] = {}
        self.mock: Mock | None = None
        self.gateway: Gateway | None = None
        self.loadgen: LoadGen | None = None
        self.specs: dict[str, dict] = {}
        self.saw_errors = False

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # --- phases ------------------------------------------------------------------------------

    def latency(self, name: str, direct: str) -> dict:
        """Concurrency 1, direct and gateway alternating (same machine load for both)."""
        job = {"calls": [self.specs[direct], self.specs[name]], "alternate": True,
               "requests": self.args.requests, "warmup_requests": min(200, self.args.requests),
               "nats_url": self.gateway.nats_url}
        before = self.gateway.cpu_s()
        result = self.loadgen.run(job)
        after = self.gateway.cpu_s()
        direct_ms, gateway_ms = result["latencies"]
        self.saw_errors = self.saw_errors or result["errors"] > 0
        gateway_requests = len(gateway_ms) + job["warmup_requests"]
        out = {"cpu_ms_per_req_c1": stats.cpu_per_request_ms(before["api"] + before["worker"],
                                                             after["api"] + after["worker"], gateway_requests),
               "direct": stats.summarize(direct_ms).as_dict(), "gateway": stats.summarize(gateway_ms).as_dict(),
               "added_p50_ms": stats.added_latency(gateway_ms, direct_ms, 0.50),
               "added_p99_ms": stats.added_latency(gateway_ms, direct_ms, 0.99),
               "errors": result["errors"], "error_samples": result["error_samples"]}
        self.log(f"{name}: c=1 p50 {out['gateway']['p50_ms']:.2f} ms (direct {out['direct']['p50_ms']:.2f}), "
                 f"added {out['added_p50_ms']:.2f} ms, errors {result['errors']}")
        return out

    def step(self, spec: dict, concurrency: int, gateway: bool = True) -> dict:
        job = {"calls": [spec], "concurrency": concurrency, "duration_s": self.args.duration,
               "warmup_s": self.args.warmup, "nats_url": self.gateway.nats_url if self.gateway else None}
        before = self.gateway.cpu_s() if gateway else None
        mock_before, wall_before = stats.process_cpu_s(self.mock.process.pid), time.perf_counter()
        result = self.loadgen.run(job)
        mock_cpu_s, wall_s = stats.process_cpu_s(self.mock.process.pid) - mock_before, time.perf_counter() - wall_before
        self.saw_errors = self.saw_errors or result["errors"] > 0
        out = {"concurrency": concurrency, "rps": result["rps"], "errors": result["errors"],
               "error_samples": result["error_samples"], "loadgen_cpu_pct": result["cpu_pct"],
               # the mock's CPU over the whole step (warm-up included), % of one core
               "mock_cpu_pct": mock_cpu_s / wall_s * 100,
               **stats.summarize(result["latencies"][0]).as_dict()}
        if gateway:
            after = self.gateway.cpu_s()
            n = result["completed"]
            out["cpu_ms_per_req"] = stats.cpu_per_request_ms(before["api"] + before["worker"],
                                                             after["api"] + after["worker"], n)
            out["api_cpu_ms_per_req"] = stats.cpu_per_request_ms(before["api"], after["api"], n)
            out["worker_cpu_ms_per_req"] = stats.cpu_per_request_ms(before["worker"], after["worker"], n)
            out["nats_cpu_ms_per_req"] = stats.cpu_per_request_ms(before["nats"], after["nats"], n)
        return out

    def saturate(self, name: str, spec: dict, gateway: bool = True, all_steps: bool = False) -> dict:
        history: list[stats.Step] = []
        steps = []
        for c in self.args.steps:
            out = self.step(spec, c, gateway)
            steps.append(out)
            history.append(stats.Step(c, out["rps"]))
            gateway_cpu = f", gateway CPU {out['cpu_ms_per_req']:.3f} ms/req" if gateway else ""
            self.log(f"{name}: c={c} {out['rps']:,.0f} req/s, p50 {out['p50_ms']:.2f} ms, loadgen CPU "
                     f"{out['loadgen_cpu_pct']:.0f}%, mock CPU {out['mock_cpu_pct']:.0f}%{gateway_cpu}, "
                     f"errors {out['errors']}")
            if not all_steps and not stats.keep_stepping(history, self.args.min_gain, self.args.patience):
                break
        best = stats.best_step(history)
        best_out = next(s for s in steps if s["concurrency"] == best.concurrency)
        return {"steps": steps, "best": best_out}

    def scenario(self, name: str) -> None:
        direct, throughput, label = PLAN[name]
        result: dict = {"label": label, "latency": self.latency(name, direct)}
        if throughput:
            result["throughput"] = self.saturate(name, self.specs[name])
        result["memory"] = self.gateway.memory()
        dead = self.gateway.alive()
        if dead:
            raise RuntimeError(f"gateway processes exited during {name}: {dead}")
        self.results[name] = result

    def register_invoke_target(self) -> None:
        import nats

        async def register() -> None:
            nc = await nats.connect(self.gateway.nats_url)
            try:
                body = {"key": "benchmock", "type": "openapi", "openapi": {"specUrl": f"{self.mock.url}/openapi.json"}}
                msg = await nc.request("integrations.v1.registry.register", orjson.dumps(body), timeout=30,
                                       headers={"x-api-key": KEY})
                if msg.headers.get("x-status") not in ("200", "201"):
                    raise RuntimeError(f"registering the mock's OpenAPI spec failed: {msg.data[:500]!r}")
            finally:
                await nc.close()

        asyncio.run(register())

    def usage(self) -> None:
        import multiprocessing as mp

        from bench.usage import ingest_rate

        self.log(f"usage: ingest of {self.args.usage_events:,} events into SQLite")
        with mp.get_context("spawn").Pool(1) as pool:
            result = pool.apply(ingest_rate, (self.args.usage_events,))
        self.log(f"usage: {result['events_per_s']:,.0f} events/s")
        self.results["usage"] = result

    def peer(self) -> None:
        """LiteLLM's proxy on the same mock, if `litellm` is on PATH (never installed by us)."""
        exe = shutil.which("litellm")
        if not exe:
            return
        port = free_port()
        log = self.gateway.work / "litellm.log"
        # recent LiteLLM refuses to start without a master key; callers then send it as a bearer key
        master = "sk-bench-litellm-master"
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "LITELLM_MASTER_KEY": master}
        proc = subprocess.Popen([exe, "--model", "openai/gpt-4o-mini", "--api_base", f"{self.mock.url}/v1",
                                 "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"], env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 90)
            spec = {"kind": "http", "url": f"http://127.0.0.1:{port}/v1/chat/completions",
                    "headers": {**JSON_HEADERS, "authorization": f"Bearer {master}"},
                    "body": orjson.dumps({"model": "openai/gpt-4o-mini", "messages": MESSAGES})}
            self.specs["peer"] = spec
            result = {"label": "peer: LiteLLM proxy (chat)", "latency": self.latency("peer", "direct"),
                      "throughput": self.saturate("peer", spec, gateway=False)}
            self.results["peer"] = result
        except Exception as exc:  # a comparison only: report and go on
            self.log(f"peer (litellm) skipped: {exc}")
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    # --- the whole run ---------------------------------------------------------------------

    def start(self) -> None:
        self.log(f"starting mock upstream (delay {self.args.upstream_delay_ms:g} ms), nats-server, api and "
                 f"{self.args.workers} worker(s)")
        self.mock = Mock(self.args.upstream_delay_ms)
        self.gateway = Gateway(self.mock, self.args.workers)
        self.loadgen = LoadGen(self.args.loadgen_procs)
        self.gateway.start()
        self.specs = calls(self.mock.url, self.gateway.url)
        self.log(f"ready; idle RSS: api {self.gateway.idle['api_rss_mb']:.0f} MB, worker "
                 f"{self.gateway.idle['worker_rss_mb']:.0f} MB; logs in {self.gateway.work} (removed at the end "
                 "unless a request failed or --keep-logs)")

    def stop(self, ok: bool) -> None:
        """Stop everything; the gateway's logs and data dir are removed unless the run failed, a
        request failed, or --keep-logs."""
        if self.loadgen:
            self.loadgen.close()
        if self.gateway:
            keep = self.args.keep_logs or not ok or self.saw_errors
            self.gateway.stop(remove=not keep)
            if keep:
                self.log(f"logs kept in {self.gateway.work}")
        if self.mock:
            self.mock.stop()

    def bench(self) -> dict:
        scenarios = self.args.scenarios
        started = time.monotonic()
        memory: dict = {}
        ok = False
        try:
            if set(scenarios) - {"usage"}:
                self.start()
            if "direct" in scenarios:
                direct = self.saturate("direct", self.specs["direct"], gateway=False, all_steps=True)
                self.results["direct"] = {"label": "direct to the mock (chat)", "throughput": direct}
            for name in ("http", "nats", "embeddings", "stream", "invoke"):
                if name in scenarios:
                    if name == "invoke":
                        self.register_invoke_target()
                    self.scenario(name)
            if "peer" in scenarios:
                self.peer()
            if self.gateway:
                memory = self.gateway.memory()
            ok = True
        finally:
            self.stop(ok)
        if "usage" in scenarios:
            self.usage()
        return {"kind": "bench", "elapsed_s": time.monotonic() - started, "config": self.config(),
                "machine": machine(), "targets": TARGETS,
                "memory": {"idle_api_rss_mb": self.gateway.idle.get("api_rss_mb") if self.gateway else None,
                           "idle_worker_rss_mb": self.gateway.idle.get("worker_rss_mb") if self.gateway else None,
                           **memory},
                "scenarios": self.results}

    def soak(self) -> dict:
        n, interval = self.args.soak, self.args.soak_interval
        samples: list[dict] = []
        started = time.monotonic()

        def sample() -> None:
            mem = self.gateway.memory()
            samples.append({"t_s": time.monotonic() - t0, "requests": self.loadgen.progress(),
                            "api_rss_mb": mem["api_rss_mb"], "worker_rss_mb": mem["worker_rss_mb"]})
            last = samples[-1]
            self.log(f"soak: {last['requests']:>8,} requests  api {last['api_rss_mb']:6.1f} MB  worker "
                     f"{last['worker_rss_mb']:6.1f} MB")

        ok = False
        try:
            self.start()
            spec = self.specs[self.args.soak_path]
            self.log(f"soak: {n:,} requests ({self.args.soak_path}) at concurrency {self.args.soak_concurrency}")
            t0 = _LAST["t"] = time.monotonic()
            sample()
            result = self.loadgen.run({"calls": [spec], "concurrency": self.args.soak_concurrency, "requests": n,
                                       "nats_url": self.gateway.nats_url}, on_tick=lambda: _every(sample, interval),
                                      tick_s=0.5)
            sample()
            memory = self.gateway.memory()
            dead = self.gateway.alive()
            self.saw_errors = self.saw_errors or result["errors"] > 0 or bool(dead)
            ok = True
        finally:
            self.stop(ok)
        growth = {}
        for role in ("api", "worker"):
            series = [(s["requests"], s[f"{role}_rss_mb"]) for s in samples]
            start, end, diff = stats.growth(series, n)
            half, _, second_half = stats.growth(series, n, mark=0.5)
            growth[role] = {"rss_at_10pct_mb": start, "rss_at_50pct_mb": half, "rss_end_mb": end, "growth_mb": diff,
                            "second_half_growth_mb": second_half}
        return {"kind": "soak", "elapsed_s": time.monotonic() - started, "config": self.config(),
                "machine": machine(), "requests": n, "errors": result["errors"],
                "error_samples": result["error_samples"], "rps": result["rps"], "latency":
                stats.summarize(result["latencies"][0]).as_dict(), "samples": samples, "growth": growth,
                "memory": {"idle_api_rss_mb": self.gateway.idle.get("api_rss_mb"),
                           "idle_worker_rss_mb": self.gateway.idle.get("worker_rss_mb"), **memory},
                "exited": dead}

    def config(self) -> dict:
        a = self.args
        return {"quick": a.quick, "scenarios": list(a.scenarios), "steps": a.steps, "duration_s": a.duration,
                "warmup_s": a.warmup, "min_gain": a.min_gain, "patience": a.patience,
                "latency_requests": a.requests, "workers": a.workers,
                "upstream_delay_ms": a.upstream_delay_ms, "loadgen_procs": a.loadgen_procs,
                "usage_events": a.usage_events}


_LAST: dict[str, float] = {}


def _every(fn, interval_s: float) -> None:
    now = time.monotonic()
    if now - _LAST.get("t", 0.0) >= interval_s:
        _LAST["t"] = now
        fn()


def machine() -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cpu_model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                      if line.startswith("model name")), None)
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg": load, "commit": commit}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# --- report --------------------------------------------------------------------------------

def _f(value, fmt: str = ".2f", none: str = "-") -> str:
    if value is None or value != value:
        return none
    return format(value, fmt)


def report(data: dict) -> str:
    lines = []
    cfg, m = data["config"], data["machine"]
    lines.append(f"python -m bench: {cfg['workers']} worker(s), steps {cfg['steps']} x {cfg['duration_s']:g}s, "
                 f"{cfg['latency_requests']} requests at c=1 per path, upstream delay {cfg['upstream_delay_ms']:g} ms; "
                 f"{m['cpus']} CPUs, load average {m['loadavg'][0]:.1f} at the end, commit {m['commit']}")
    s = data["scenarios"]
    direct_steps = {st["concurrency"]: st for st in s.get("direct", {}).get("throughput", {}).get("steps", [])}
    header = (f"{'scenario':<30} {'p50 ms':>7} {'p99 ms':>7} {'added p50':>10} {'target':>7} "
              f"{'best req/s':>10} {'@c':>4} {'target':>7} {'direct@c':>9} {'CPU ms/req':>10} {'loadgen CPU':>11} "
              f"{'errors':>6}")
    lines += [header, "-" * len(header)]
    if "direct" in s:
        best = s["direct"]["throughput"]["best"]
        first = s["direct"]["throughput"]["steps"][0]  # alone at its lowest concurrency
        lines.append(f"{s['direct']['label']:<30} {first['p50_ms']:>7.2f} {first['p99_ms']:>7.2f} {'':>10} {'':>7} "
                     f"{best['rps']:>10,.0f} "
                     f"{best['concurrency']:>4} {'':>7} {'':>9} {'':>10} {best['loadgen_cpu_pct']:>10.0f}% "
                     f"{best['errors']:>6}")
    for name in ("http", "nats", "embeddings", "stream", "invoke", "peer"):
        if name not in s:
            continue
        r = s[name]
        lat = r["latency"]
        target = TARGETS.get(name, {})
        added = lat["added_p50_ms"]
        added_t = (f"≤{target['added_p50_ms']:g} " + stats.verdict(added, target["added_p50_ms"], False)
                   if "added_p50_ms" in target else "")
        errors = lat["errors"]
        if "throughput" in r:
            best = r["throughput"]["best"]
            errors += sum(st["errors"] for st in r["throughput"]["steps"])
            rps_t = (f"≥{target['rps']:g} " + stats.verdict(best["rps"], target["rps"], True)
                     if "rps" in target else "")
            d = direct_steps.get(best["concurrency"])
            tp = (f"{best['rps']:>10,.0f} {best['concurrency']:>4} {rps_t:>7} "
                  f"{_f(d['rps'] if d else None, ',.0f'):>9} {_f(best.get('cpu_ms_per_req'), '.3f'):>10} "
                  f"{best['loadgen_cpu_pct']:>10.0f}%")
        else:  # latency only: the CPU per request at c=1
            tp = f"{'-':>10} {'':>4} {'':>7} {'':>9} {_f(lat.get('cpu_ms_per_req_c1'), '.3f'):>10} {'':>11}"
        lines.append(f"{r['label']:<30} {lat['gateway']['p50_ms']:>7.2f} {lat['gateway']['p99_ms']:>7.2f} "
                     f"{added:>10.2f} {added_t:>7} {tp} {errors:>6}")
    if "usage" in s:
        u = s["usage"]
        lines.append(f"{'usage store ingest (SQLite)':<30} {u['events_per_s']:,.0f} events/s "
                     f"({u['events']:,} events, batch {u['batch']}, consumer lag after {u['consumer_lag']})")
    problems = []
    for name, r in s.items():
        for where in [r.get("latency", {}), *r.get("throughput", {}).get("steps", [])]:
            for sample in where.get("error_samples", []):
                problems.append(f"  {name}: {sample}")
    if problems:
        lines.append("ERRORS (first samples):")
        lines += problems[:10]
    mem = data["memory"]
    lines.append("")
    if mem.get("idle_worker_rss_mb") is not None:
        idle, target = mem["idle_worker_rss_mb"], TARGETS["idle_worker_rss_mb"]
        lines.append(f"memory (MB): api idle {_f(mem['idle_api_rss_mb'], '.0f')}, peak "
                     f"{_f(mem.get('api_peak_mb'), '.0f')}; worker idle {_f(idle, '.0f')} (target ≤{target:g} "
                     f"{stats.verdict(idle, target, False)}), peak {_f(mem.get('worker_peak_mb'), '.0f')}")
    lines.append("added p50 = gateway p50 - direct p50 at c=1, interleaved; best req/s = highest throughput over the "
                 "concurrency steps;\ndirect@c = the mock directly at that concurrency; CPU ms/req = user+sys of "
                 "api + worker(s) per request at that step (stream: at c=1);\nloadgen CPU = the load generator's CPU "
                 "in % of one core")
    return "\n".join(lines)


def soak_report(data: dict) -> str:
    lines = [f"soak: {data['requests']:,} requests at concurrency {data['config'].get('soak_concurrency', '')}: "
             f"{data['rps']:,.0f} req/s, p50 {data['latency']['p50_ms']:.2f} ms, p99 {data['latency']['p99_ms']:.2f}"
             f" ms, errors {data['errors']}",
             f"{'t s':>6} {'requests':>10} {'api RSS MB':>11} {'worker RSS MB':>14}"]
    for smp in data["samples"]:
        lines.append(f"{smp['t_s']:>6.0f} {smp['requests']:>10,} {smp['api_rss_mb']:>11.1f} "
                     f"{smp['worker_rss_mb']:>14.1f}")
    for role, g in data["growth"].items():
        per_10k = g["growth_mb"] / (0.9 * data["requests"]) * 10_000
        lines.append(f"{role}: RSS {g['rss_at_10pct_mb']:.1f} MB at the 10% mark → {g['rss_end_mb']:.1f} MB at the "
                     f"end = {g['growth_mb']:+.1f} MB ({per_10k:+.2f} MB per 10,000 requests); second half alone "
                     f"{g['second_half_growth_mb']:+.1f} MB (a leak grows as much in both halves, warm-up flattens)")
    if data["exited"]:
        lines.append(f"processes exited during the soak: {data['exited']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (< 1 minute): fewer requests, steps 1,16,64")
    p.add_argument("--scenarios", default=None,
                   help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all; peer only if litellm "
                        "is on PATH)")
    p.add_argument("--duration", type=float, default=None, help="seconds per concurrency step (3; quick 1)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds before each step (0.5; quick 0.3)")
    p.add_argument("--steps", default=None, help="concurrency steps (1,4,16,32,64; quick 1,16,64)")
    p.add_argument("--min-gain", type=float, default=0.05,
                   help="stop stepping when a step improves the best throughput by less than this (0.05)")
    p.add_argument("--patience", type=int, default=None,
                   help="steps without that gain before stopping (2; quick 1): one noisy step does not end the run")
    p.add_argument("--requests", type=int, default=None, help="requests per path at c=1 (2000; quick 300)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    p.add_argument("--upstream-delay-ms", type=float, default=0.0, help="fixed delay of every mock response")
    p.add_argument("--loadgen-procs", type=int, default=1, help="load generator processes (1)")
    p.add_argument("--usage-events", type=int, default=None, help="events of the ingest scenario (20000; quick 5000)")
    p.add_argument("--soak", type=int, default=None, metavar="N", help="soak instead: N execute requests, RSS "
                                                                       "sampled as they run")
    p.add_argument("--soak-concurrency", type=int, default=16)
    p.add_argument("--soak-interval", type=float, default=3.0, help="seconds between RSS samples (3)")
    p.add_argument("--soak-path", choices=("http", "nats"), default="http")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the gateway's logs and data dir (kept anyway when a request failed)")
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (1.0 if q else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if q else 0.5)
    args.steps = [int(x) for x in (args.steps or ("1,16,64" if q else "1,4,16,32,64")).split(",")]
    args.requests = args.requests or (300 if q else 2000)
    args.patience = args.patience or (1 if q else 2)
    args.usage_events = args.usage_events or (5000 if q else 20000)
    chosen = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scenarios = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    if args.soak:
        data = run.soak()
        data["config"]["soak_concurrency"] = args.soak_concurrency
        text = soak_report(data)
    else:
        data = run.bench()
        text = report(data)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
