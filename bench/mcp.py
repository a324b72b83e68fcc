"""MCP endpoint timings at concurrency 1: one in-process worker and the api under uvicorn on
loopback (embedded nats-server; httpbinx and the SDK example MCP server as real peers), measured
with the official SDK client:

* tools/list (first page) in both protocol eras, and the first tools/list after a 1500-operation
  OpenAPI spec was registered (the catalog build of that org);
* tools/call of an OpenAPI operation through the endpoint, against POST /invoke and httpbinx directly;
* tools/call of a registered MCP server's tool through the endpoint, against the SDK client calling
  the server directly.

    .venv/bin/python -m bench.mcp [--requests 300]
"""

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx2
import nats
import uvicorn

from api.app import create_app
from api.settings import ApiSettings
from bench.latency import percentiles
from bench.registry import HEADERS, KEY, bus, large_spec, main_with_peers, timed
from bench.stack import free_port
from handlers.app import build_app
from service.settings import Settings

ENDPOINT = "/api/integrations/mcp"


async def serve_api(nats_url: str) -> tuple[uvicorn.Server, asyncio.Task, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ApiSettings(_env_file=None, nats_url=nats_url)),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.02)
    return server, task, f"http://127.0.0.1:{port}"


async def run(n: int, nats_url: str, httpbin: str, mcp_url: str) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    settings = Settings(_env_file=None, nats_url=nats_url, data_dir=Path(tempfile.mkdtemp()), api_keys=KEY,
                        outbound_allow="127.0.0.1", rate_limit_enabled=False)   # one key, hundreds of calls
    async with build_app(settings):
        server, task, base = await serve_api(nats_url)
        nc = await nats.connect(nats_url)
        await bus(nc, "integrations.v1.registry.register", {
            "key": "httpbin", "type": "openapi", "openapi": {"specUrl": f"{httpbin}/openapi.json"}})
        await bus(nc, "integrations.v1.registry.register", {
            "key": "tools", "type": "mcp", "mcp": {"transport": "http", "serverUrl": mcp_url}})
        results: dict[str, list[float]] = {}
        async with httpx2.AsyncClient(headers=HEADERS, timeout=60) as http, aiohttp.ClientSession() as direct:
            async with Client(streamable_http_client(base + ENDPOINT, http_client=http), mode="legacy") as legacy, \
                    Client(streamable_http_client(base + ENDPOINT, http_client=http), mode="auto") as modern, \
                    Client(mcp_url) as upstream:
                async def httpbin_direct():
                    async with direct.get(f"{httpbin}/get") as r:
                        await r.read()

                async def invoke_http():
                    async with direct.post(f"{base}/api/integrations/invoke", headers=HEADERS,
                                           json={"operation": "httpbin.get.get.get"}) as r:
                        assert r.status == 200
                        await r.read()

                for name, client in (("2025-11-25", legacy), ("2026-07-28", modern)):
                    results[f"tools/list, first page ({name})"] = await timed(n, lambda c=client: c.list_tools())
                    results[f"tools/call OpenAPI op ({name})"] = await timed(
                        n, lambda c=client: c.call_tool("httpbin_get_get_get", {}))
                    results[f"tools/call MCP tool ({name})"] = await timed(
                        n, lambda c=client: c.call_tool("tools_tool_add", {"a": 1, "b": 2}))
                results["POST /invoke OpenAPI op"] = await timed(n, invoke_http)
                results["httpbinx directly (aiohttp)"] = await timed(n, httpbin_direct)
                results["MCP tool directly (SDK Client)"] = await timed(n, lambda: upstream.call_tool("add",
                                                                                                     {"a": 1, "b": 2}))
                await bus(nc, "integrations.v1.registry.register", {
                    "key": "large", "type": "openapi", "openapi": {"spec": large_spec(), "serverUrl": httpbin}})
                start = time.perf_counter()
                await legacy.list_tools()
                cold_ms = (time.perf_counter() - start) * 1000
                warm = await timed(20, lambda: legacy.list_tools())
        await nc.close()
        server.should_exit = True
        await task
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"{name:40s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({len(samples)} requests)")
    print(f"tools/list after registering 1500 operations: first {cold_ms:.0f} ms (catalog build), "
          f"then median {statistics.median(warm):.1f} ms")


def main() -> None:
    main_with_peers(run, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    main()
