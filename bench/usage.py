"""Usage pipeline benchmarks (numbers in docs/BENCHMARKS.md, "Usage pipeline").

    .venv/bin/python -m bench.usage observer [--calls 5000] [--writer] [--await-ack]
        time of the usage observer on the reply path (build the event, publish it, await the
        JetStream ack), in process against an embedded nats-server
    .venv/bin/python -m bench.usage e2e [--requests 2000] [--rounds 3] [--no-writer]
        execute over NATS through `serve`, usage events on vs off (INTEGRATIONS_USAGE_EVENTS),
        interleaved rounds; the difference of the p50s is the added latency end to end
    .venv/bin/python -m bench.usage ingest --store sqlite|postgres [--events 100000] [--batch 1000] [--spread-s 600]
        events published to the stream first, then the store writer drains them: events/s
    .venv/bin/python -m bench.usage summary --store postgres|sqlite [--rows 1000000] [--keep | --reuse SCHEMA]
        GET /usage handler time over N rows of one organization spread over 30 days

PostgreSQL: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), in a
throwaway schema dropped afterwards.
"""

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import nats
import orjson
import uvloop

from bench.latency import BODY, KEY, measure
from bench.stack import served
from contracts.usage import UsageEvent, usage_subject
from service.auth.access import Caller
from service.auth.principal import Principal
from service.calls import CallRecord
from service.commands import Command, Reply
from service.container import Services
from service.embedded_nats import EmbeddedNats
from service.settings import Settings
from service.usage.events import encode_event, new_event_id, usage_event
from service.usage.pipeline import UsagePipeline
from service.usage.writer import WriterLock

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
INTEGRATIONS = ("openai", "huggingface", "anthropic", "billing-api", "crm")
MODELS = ("gpt-4o-mini", "gpt-4o", "meta-llama/Llama-3.2-3B-Instruct", None, None)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def fake_event(org: str, ts: datetime, rng: random.Random) -> UsageEvent:
    i = rng.randrange(len(INTEGRATIONS))
    ok = rng.random() > 0.05
    prompt, completion = (rng.randint(10, 2000), rng.randint(1, 800)) if ok and MODELS[i] else (0, 0)
    return UsageEvent(
        id=new_event_id(), timestamp=ts, requestId=f"req_{secrets.token_hex(6)}", kind="execute" if MODELS[i] else
        "invoke", orgId=org, principalId=f"user-{rng.randrange(200)}", principalType="user",
        integration=INTEGRATIONS[i], operation="chat.completions", modelRequested=MODELS[i], modelServed=MODELS[i],
        success=ok, statusCode=200 if ok else 502, errorCategory=None if ok else "provider",
        errorReason=None if ok else "upstream_error", errorMessage=None if ok else "openai returned 502",
        durationMs=rng.randint(50, 5000), promptTokens=prompt, completionTokens=completion,
        totalTokens=prompt + completion, costMicros=prompt + 4 * completion if MODELS[i] else None,
        credentialSource="env", callerService="assistants", traceId=secrets.token_hex(16))


def settings_for(store: str, nats_url: str, data_dir: Path, schema: str | None = None, **extra) -> Settings:
    values = {"_env_file": None, "nats_url": nats_url, "data_dir": data_dir, "api_keys": KEY, **extra}
    if store == "postgres":
        values.update(database_url=PG_URL, database_schema=schema)
    return Settings(**values)


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# --- observer: the reply path's added time -------------------------------------------------------


async def observer(calls: int, writer: bool, await_ack: bool) -> None:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="bench-nats-")) / "js")
    url = server.start()
    settings = settings_for("sqlite", url, Path(tempfile.mkdtemp(prefix="bench-data-")))
    if not writer:  # another process holds the writer lock: this worker only publishes (most workers)
        WriterLock(settings.usage_db_path.with_name(settings.usage_db_path.name + ".writer.lock")).try_acquire()
    pipeline = UsagePipeline(settings)
    await pipeline.start()
    request_nc = await nats.connect(url)  # stands for the worker's request connection
    if not await_ack:
        pipeline.publish_on(request_nc)
    caller = Caller(Principal(id="key:bench", type="api_key", organizations=None), "acme")
    reply = Reply(200, orjson.dumps({"success": True, "data": {"content": "x" * 200}}), {})
    build, observe = [], []
    try:
        for i in range(calls + 500):
            command = Command(BODY, {"x-api-key": KEY, "x-symbia-caller": "assistants",
                                     "x-trace-id": "0af7651916cd43dd8448eb211c80319c"}, f"req_{i}")
            record = command.record = CallRecord.start("execute", caller)
            record.integration, record.operation, record.model_requested = "openai", "chat.completions", "gpt-4o-mini"
            record.model_served, record.credential_source = "gpt-4o-mini-2024-07-18", "env"
            record.add_usage({"promptTokens": 12, "completionTokens": 30, "totalTokens": 42})
            started = time.perf_counter()
            encode_event(usage_event(command, reply, record))
            built = time.perf_counter()
            await pipeline.observe(command, reply)
            done = time.perf_counter()
            if i >= 500:  # warm-up
                build.append((built - started) * 1000)
                observe.append((done - built) * 1000)
    finally:
        await request_nc.drain()
        await pipeline.close()
        server.stop()
    role = "this worker is also the store writer" if writer else "another worker writes the store"
    print(f"{calls} sequential calls of the usage observer (after 500 warm-up), uvloop, embedded nats-server, "
          f"file store; {role}; " + ("awaiting each PubAck (the alternative design)" if await_ack else
                                     "PubAck awaited in the background (the design)"))
    print(f"{'step':<42} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'build + encode the event':<42} {statistics.median(build):8.3f} {pct(build, 0.99):8.3f}")
    print(f"{'observer (build + publish)':<42} {statistics.median(observe):8.3f} {pct(observe, 0.99):8.3f}")


# --- e2e: usage on vs off through serve ----------------------------------------------------------


def tree_cpu_s(root: int) -> float:
    """utime + stime of a process and its descendants, in seconds."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in stats.items() if parent in frontier} - tree
        tree |= frontier
    return sum(stats[pid][1] for pid in tree if pid in stats)


CPU: dict[bool, list[float]] = {}


def run_serve(usage: bool, requests: int, writer: bool = True) -> dict[str, list[float]]:
    env = {"INTEGRATIONS_USAGE_EVENTS": "true" if usage else "false", "DATABASE_URL": None}

    def hold_writer_lock(work: Path) -> None:
        # the bench holds the writer lock: the worker only publishes (a host's other workers)
        WriterLock(work / "usage.db.writer.lock").try_acquire()

    with served("bench-usage-", env, prepare=None if writer else hold_writer_lock) as gw:
        cpu = tree_cpu_s(gw.process.pid)
        results = asyncio.run(measure(requests, gw.mock_url, gw.url, gw.nats_url))
        gateway_requests = sum(len(v) + min(200, requests) for k, v in results.items() if k != "direct")
        CPU.setdefault(usage, []).append((tree_cpu_s(gw.process.pid) - cpu) / gateway_requests * 1e6)
        return results


def e2e(requests: int, rounds: int, writer: bool) -> None:
    p50: dict[tuple[bool, str], list[float]] = {}
    for r in range(rounds):
        for usage in ((True, False) if r % 2 == 0 else (False, True)):
            for path, samples in run_serve(usage, requests, writer).items():
                p50.setdefault((usage, path), []).append(statistics.median(samples))
    print(f"{rounds} interleaved rounds × {requests} sequential requests per path; median of the rounds' p50 (ms)")
    print(f"{'path':<8} {'usage off':>10} {'usage on':>10} {'added':>8}   rounds' p50 off / on")
    for path in ("http", "nats"):
        off, on = statistics.median(p50[(False, path)]), statistics.median(p50[(True, path)])
        rounds_text = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(p50[(False, path)], p50[(True, path)], strict=True))
        print(f"{path:<8} {off:10.3f} {on:10.3f} {on - off:8.3f}   {rounds_text}")
    off, on = statistics.median(CPU[False]), statistics.median(CPU[True])
    print(f"CPU of the serve process tree (nats-server, worker, api) per gateway request: {off:.0f} µs off, "
          f"{on:.0f} µs on, {on - off:+.0f} µs")


# --- ingest: stream → store ----------------------------------------------------------------------


async def ingest(store: str, events: int, batch: int, spread_s: float, quiet: bool = False) -> dict:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="bench-nats-")) / "js")
    url = server.start()
    schema = f"bench_usage_{secrets.token_hex(4)}" if store == "postgres" else None
    settings = settings_for(store, url, Path(tempfile.mkdtemp(prefix="bench-data-")), schema,
                            usage_stream_max_bytes=8 * 1024 ** 3, usage_batch_size=batch)
    rng = random.Random(1)
    now = datetime.now(UTC)
    nc = await nats.connect(url)
    # Declare the stream, then fill it before any writer runs.
    declare = UsagePipeline(settings)
    declare._nc = nc
    await declare._ensure_stream()
    js = nc.jetstream()
    orgs = [f"org-{i}" for i in range(20)]
    started = time.perf_counter()
    for i in range(events):
        e = fake_event(rng.choice(orgs), now - timedelta(seconds=rng.uniform(0, spread_s)), rng)
        await js.publish_async(usage_subject(e.orgId), e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id})
        if i % 5000 == 4999:
            await js.publish_async_completed()
    await js.publish_async_completed()
    publish_s = time.perf_counter() - started
    if not quiet:
        print(f"published {events} events to the stream in {publish_s:.1f}s")

    pipeline = UsagePipeline(settings)
    started = time.perf_counter()
    await pipeline.start()
    try:
        while True:
            await asyncio.sleep(0.2)
            if pipeline.store_ready.is_set() and pipeline.writer.written >= events:
                break
        elapsed = time.perf_counter() - started
        lag = await pipeline.consumer_lag()
    finally:
        await pipeline.close()
        await nc.close()
        server.stop()
        if schema:
            await drop_schema(schema)
    if not quiet:
        print(f"{store}: {events} events (timestamps spread over {spread_s:g}s, 20 orgs, 200 users) from the stream "
              f"into the store in {elapsed:.1f}s = {events / elapsed:,.0f} events/s (batch "
              f"{settings.usage_batch_size}, consumer lag after: {lag})")
    return {"store": store, "events": events, "batch": settings.usage_batch_size, "publish_s": publish_s,
            "elapsed_s": elapsed, "events_per_s": events / elapsed, "consumer_lag": lag}


def ingest_rate(events: int, store: str = "sqlite") -> dict:
    """`python -m bench`'s usage scenario (in a child process): the ingest figures, printed nothing."""
    return uvloop.run(ingest(store, events, Settings.model_fields["usage_batch_size"].default, 600.0, quiet=True))


# --- summary over N rows -------------------------------------------------------------------------


async def summary(store: str, rows: int, keep: bool, reuse: str | None) -> None:
    schema = reuse or (f"bench_usage_{secrets.token_hex(4)}" if store == "postgres" else None)
    settings = settings_for(store, "nats://127.0.0.1:1", Path(tempfile.mkdtemp(prefix="bench-data-")), schema)
    services = Services(settings)
    usage_store = services.usage.store
    await usage_store.open()
    services.usage.store_ready.set()
    rng = random.Random(2)
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch = 5000
    for start in range(0, 0 if reuse else rows, batch):
        await usage_store.insert([fake_event("acme", now - timedelta(seconds=rng.uniform(0, 30 * 86400)), rng)
                                  for _ in range(min(batch, rows - start))])
    load = time.perf_counter() - started
    if not reuse:
        print(f"{store}: loaded {rows:,} rows of one organization over 30 days in {load:.0f}s "
              f"({rows / load:,.0f} rows/s in batches of {batch}, rollups included)")
    if store == "postgres":
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
                                   "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
                                   "AND c.relkind = 'r'", schema)
        print(f"postgres: schema size {size}")
    try:
        print(f"{'query':<44} {'p50 ms':>8} {'p99 ms':>8}")
        for days, extra in ((30, {}), (7, {}), (1, {}), (30, {"integration": "openai"})):
            body = orjson.dumps({"days": days, **extra})
            samples = []
            for i in range(23):
                command = Command(body, {"x-api-key": KEY, "x-org-id": "acme"}, f"req_{i}")
                t = time.perf_counter()
                reply = await services.usage_queries.summary(command)
                if i >= 3:
                    samples.append((time.perf_counter() - t) * 1000)
            total = orjson.loads(reply.body)["summary"]["totalRequests"]
            label = f"GET /usage?days={days}" + "".join(f"&{k}={v}" for k, v in extra.items()) + f" ({total:,} rows)"
            print(f"{label:<44} {statistics.median(samples):8.1f} {pct(samples, 0.99):8.1f}")
        for query in ({"days": 30, "limit": 100}, {"days": 30, "limit": 100, "offset": 10000}):
            samples = []
            for i in range(13):
                t = time.perf_counter()
                await services.usage_queries.logs(Command(orjson.dumps(query), {"x-api-key": KEY, "x-org-id": "acme"},
                                                         f"req_{i}"))
                if i >= 3:
                    samples.append((time.perf_counter() - t) * 1000)
            label = "GET /usage/logs?" + "&".join(f"{k}={v}" for k, v in query.items())
            print(f"{label:<44} {statistics.median(samples):8.1f} {pct(samples, 0.99):8.1f}")
        if store == "postgres":
            # For comparison: the same totals straight from the raw rows (no rollups).
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                await conn.fetch("SELECT integration, principal_id, count(*), sum(total_tokens), sum(cost_micros), "
                                 "sum(duration_ms) FROM usage_events WHERE org_id = 'acme' AND ts >= $1 "
                                 "GROUP BY integration, principal_id", now - timedelta(days=30))
                samples.append((time.perf_counter() - t) * 1000)
            print(f"{'(raw rows GROUP BY, no rollups, days=30)':<44} {statistics.median(samples):8.1f}")
            await conn.close()
    finally:
        await services.close()
        if schema and not keep and not reuse:
            await drop_schema(schema)
        elif schema:
            print(f"kept schema {schema} (--reuse {schema})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("observer")
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--writer", action="store_true", help="this process also runs the store writer")
    p.add_argument("--await-ack", action="store_true", help="wait for each PubAck before returning")
    p = sub.add_parser("e2e")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-writer", action="store_true", help="another process holds the store writer lock")
    p = sub.add_parser("ingest")
    p.add_argument("--store", choices=("sqlite", "postgres"), required=True)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=Settings.model_fields["usage_batch_size"].default)
    p.add_argument("--spread-s", type=float, default=600.0,
                   help="age range of the events: 600 = live traffic; 2592000 = a 30-day backfill")
    p = sub.add_parser("summary")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    p.add_argument("--reuse", metavar="SCHEMA", help="query a kept schema instead of loading rows")
    args = parser.parse_args()
    if args.command == "observer":
        uvloop.run(observer(args.calls, args.writer, args.await_ack))  # workers run on uvloop
    elif args.command == "e2e":
        e2e(args.requests, args.rounds, not args.no_writer)
    elif args.command == "ingest":
        uvloop.run(ingest(args.store, args.events, args.batch, args.spread_s))
    else:
        uvloop.run(summary(args.store, args.rows, args.keep, args.reuse))


if __name__ == "__main__":
    main()
