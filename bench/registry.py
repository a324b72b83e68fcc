"""Registry and invoke timings at concurrency 1, over NATS to one in-process worker (embedded
nats-server, httpbinx and the SDK example MCP server as real peers on loopback; bounded loops):

* registering a ~2 MB OpenAPI spec (about the size of OpenAI's), inline, through the claim check;
* invoke of an OpenAPI operation against calling httpbinx directly;
* invoke of an MCP tool (pooled connection) against the SDK client calling it directly.

    .venv/bin/python -m bench.registry [--requests 300]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nats
import orjson

from bench.latency import percentiles
from bench.latency import timed as latency_timed
from bench.stack import free_port
from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from service.settings import Settings

KEY = "bench-key"
HEADERS = {"x-api-key": KEY, "x-org-id": "bench"}


def large_spec(n: int = 1500) -> dict:
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string", "description": filler[:200]}
                                               for i in range(20)}}
    paths = {f"/op{i}": {"post": {"operationId": f"op{i}", "description": filler, "requestBody": {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Big"}}}},
        "responses": {"200": {"description": "ok"}}}} for i in range(n)}
    return {"openapi": "3.1.0", "info": {"title": "Large", "version": "1"}, "paths": paths,
            "components": {"schemas": {"Big": schema}}}


def wait_port(url: str, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def bus(nc, subject: str, body: dict) -> dict:
    data, headers = orjson.dumps(body), dict(HEADERS)
    if len(data) + 64 * 1024 > nc.max_payload:  # claim check (docs/CONTRACTS.md)
        store = await nc.jetstream().object_store("integrations-payloads")
        name = f"bench-{time.perf_counter_ns()}"
        await store.put(name, data)
        data, headers["x-payload-ref"] = b"", name
    msg = await nc.request(subject, data, timeout=60, headers=headers)
    assert msg.headers["x-status"] == "200", msg.data[:500]
    return orjson.loads(msg.data) if msg.data else {}


async def timed(n: int, call) -> list[float]:
    return await latency_timed(n, call, warmup=50)


async def run(n: int, nats_url: str, httpbin: str, mcp_url: str) -> None:
    from mcp import Client

    settings = Settings(_env_file=None, nats_url=nats_url, data_dir=Path(tempfile.mkdtemp()), api_keys=KEY,
                        outbound_allow="127.0.0.1", rate_limit_enabled=False)   # one key, hundreds of calls
    app = build_app(settings)
    async with app:
        nc = await nats.connect(nats_url)
        spec = large_spec()
        size = len(orjson.dumps(spec))
        register_ms = []
        for i in range(5):
            start = time.perf_counter()
            await bus(nc, "integrations.v1.registry.register", {
                "key": f"large{i}", "type": "openapi", "openapi": {"spec": spec, "serverUrl": httpbin}})
            register_ms.append((time.perf_counter() - start) * 1000)
        await bus(nc, "integrations.v1.registry.register", {
            "key": "httpbin", "type": "openapi", "openapi": {"specUrl": f"{httpbin}/openapi.json"}})
        await bus(nc, "integrations.v1.registry.register", {
            "key": "tools", "type": "mcp", "mcp": {"transport": "http", "serverUrl": mcp_url}})

        async with aiohttp.ClientSession() as http:
            async def direct_http():
                async with http.get(f"{httpbin}/get") as r:
                    await r.read()

            async def invoke_http():
                await bus(nc, "integrations.v1.invoke", {"operation": "httpbin.get.get.get"})

            async with Client(mcp_url) as client:
                async def direct_mcp():
                    await client.call_tool("add", {"a": 1, "b": 2})

                async def invoke_mcp():
                    await bus(nc, "integrations.v1.invoke", {"operation": "tools.tool.add",
                                                             "body": {"a": 1, "b": 2}})

                results = {
                    "httpbinx directly (aiohttp)": await timed(n, direct_http),
                    "invoke OpenAPI op over NATS": await timed(n, invoke_http),
                    "MCP tool directly (SDK Client)": await timed(n, direct_mcp),
                    "invoke MCP tool over NATS": await timed(n, invoke_mcp),
                }
        await nc.close()
    print(f"register a {size / 1e6:.1f} MB spec (1500 operations), inline over NATS: "
          f"median {statistics.median(register_ms):.0f} ms of 5")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"{name:32s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({len(samples)} requests)")


def main_with_peers(run, description: str) -> None:
    """`--requests`, then `run(n, nats_url, httpbin_url, mcp_url)` against a private NATS server,
    httpbinx and the SDK test MCP server (bench/mcp.py uses it too)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    nats_server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="bench-nats-")) / "js")
    nats_url = nats_server.start()
    hb_port, mcp_port = free_port(), free_port()
    peers = [
        subprocess.Popen([str(Path(sys.executable).parent / "httpbinx"), "server", "--host", "127.0.0.1", "--port",
                          str(hb_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "tests.fakes.mcp_server", "http", str(mcp_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    httpbin, mcp_url = f"http://127.0.0.1:{hb_port}", f"http://127.0.0.1:{mcp_port}/mcp"
    try:
        wait_port(f"{httpbin}/openapi.json")
        wait_port(mcp_url)
        asyncio.run(run(max(1, min(args.requests, 5000)), nats_url, httpbin, mcp_url))
    finally:
        for peer in peers:
            peer.terminate()
            peer.wait(10)
        nats_server.stop()


def main() -> None:
    main_with_peers(run, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
