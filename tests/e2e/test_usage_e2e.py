"""Usage across real processes: a worker killed with SIGKILL right after it replied loses no
event, and usage survives a restart of `serve`."""

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from service.embedded_nats import EmbeddedNats
from service.providers.models import cost_usd_micros
from tests.conftest import CALLER_KEY, OPENAI_KEY
from tests.e2e import test_serve
from tests.usage.conftest import new_org, stream_events

pytestmark = pytest.mark.e2e
CHAT = test_serve.CHAT
serve = test_serve.serve  # the fixture that runs `symbia-integrations serve` in a temp dir


def worker_env(nats_url: str, data_dir: Path, llmock_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INTEGRATIONS_", "NATS_", "OPENAI_")) and k != "DATABASE_URL"}
    return {**env, "NATS_URL": nats_url, "INTEGRATIONS_DATA_DIR": str(data_dir), "OPENAI_BASE_URL": llmock_url,
            "OPENAI_API_KEY": OPENAI_KEY, "INTEGRATIONS_API_KEYS": CALLER_KEY,
            # the killed writer may hold the event unacknowledged: the next one gets it after this
            "INTEGRATIONS_USAGE_ACK_WAIT_S": "2"}


async def start_worker(env: dict[str, str], nc) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "handlers", env=env,
                                                stderr=asyncio.subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await nc.request("integrations.v1.health.ping", b"{}", timeout=0.5)
            return proc
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("worker did not start")


async def test_sigkill_right_after_the_reply_loses_no_event(llmock):
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="kill-nats-")) / "js")
    url = server.start()
    data_dir = Path(tempfile.mkdtemp(prefix="kill-data-"))
    env = worker_env(url, data_dir, llmock.base_url)
    nc = await nats.connect(url)
    first = second = None
    try:
        first = await start_worker(env, nc)
        org = new_org()
        msg = await nc.request("integrations.v1.execute", orjson.dumps(CHAT), timeout=15,
                               headers={"x-api-key": CALLER_KEY, "x-org-id": org})
        os.kill(first.pid, signal.SIGKILL)  # no drain, no flush, no chance to finish anything
        await first.wait()
        reply = orjson.loads(msg.data)
        assert msg.headers["x-status"] == "200", reply

        (event,) = await stream_events(nc, org)  # in the stream although the worker is gone
        assert event["requestId"] == reply["requestId"] and event["totalTokens"] > 0

        second = await start_worker(env, nc)  # takes over the writer lock and consumes what is left
        for _ in range(200):
            status = await nc.request("integrations.v1.usage.summary", b"{}", timeout=5,
                                      headers={"x-api-key": CALLER_KEY, "x-org-id": org})
            summary = orjson.loads(status.data)["summary"]
            if summary["totalRequests"]:
                break
            await asyncio.sleep(0.05)
        usage = reply["data"]["usage"]
        assert summary["totalRequests"] == 1 and summary["totalTokens"] == usage["totalTokens"]
        assert summary["totalCostMicros"] == cost_usd_micros("openai", reply["data"]["model"], usage["promptTokens"],
                                                             usage["completionTokens"])
    finally:
        await nc.close()
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
        server.stop()


def test_usage_survives_a_restart_of_serve(serve):
    """The newcomer's check with the default SQLite store (PostgreSQL: tests/usage/test_usage_restart.py)."""
    env = {"INTEGRATIONS_API_KEYS": CALLER_KEY}
    headers = {"X-API-Key": CALLER_KEY}
    gw = serve(**env)
    gw.wait_ready()
    replies = [httpx.post(f"{gw.url}/api/integrations/execute", json=CHAT, headers=headers, timeout=10).json()
               for _ in range(3)]
    assert all(r["success"] for r in replies)
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(30) == 0, gw.log

    again = serve(**env)  # same data dir (and database)
    again.wait_ready()
    body = {}
    for _ in range(100):
        body = httpx.get(f"{again.url}/api/integrations/usage", headers=headers, timeout=10).json()
        if body["summary"]["totalRequests"] >= 3:
            break
        time.sleep(0.1)
    tokens = sum(r["data"]["usage"]["totalTokens"] for r in replies)
    assert body["summary"]["totalRequests"] == 3 and body["summary"]["totalTokens"] == tokens, \
        f"{body}\n--- first serve:\n{gw.log}\n--- second serve:\n{again.log}"
    assert body["summary"]["totalCostMicros"] > 0
    status = httpx.get(f"{again.url}/api/integrations/db/status", headers=headers, timeout=10).json()
    assert status["mode"] == "sqlite" and status["rowCount"] == 3
