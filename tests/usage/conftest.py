"""Gateways for the usage tests: a private nats-server, an in-process worker with the SQLite
or the PostgreSQL store, and a plain nats-py client. PostgreSQL is the real server at
TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), one throwaway schema
per gateway, dropped at the end of the session; a test told to use it fails if it cannot."""

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import orjson
import pytest
from nats.aio.client import Client

from handlers.app import build_app
from service.auth.keys import KeyStore
from service.container import Services
from service.embedded_nats import EmbeddedNats
from service.settings import Settings
from tests.conftest import CALLER_KEY, OPENAI_KEY

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ("sqlite", "postgres")
STREAM = "INTEGRATIONS_USAGE"
_schemas: list[str] = []


def new_schema() -> str:
    name = f"usage_test_{secrets.token_hex(4)}"
    _schemas.append(name)
    return name


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas():
    yield
    if not _schemas:
        return

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            for name in _schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@dataclass
class Gateway:
    nats_url: str
    settings: Settings
    services: Services
    nc: Client
    second_key: str      # a stored key usable in any org: a second principal
    admin_key: str

    async def call(self, subject: str, body: object = None, *, key: str = CALLER_KEY, org: str | None = None,
                   headers: dict | None = None, wait_s: float = 15) -> tuple[int, object, dict]:
        hdrs = {"x-api-key": key, **({"x-org-id": org} if org else {}), **(headers or {})}
        raw = body if isinstance(body, bytes) else orjson.dumps(body if body is not None else {})
        msg = await self.nc.request(subject, raw, timeout=wait_s, headers=hdrs)
        return int(msg.headers["x-status"]), orjson.loads(msg.data), msg.headers

    async def execute(self, org: str, **kwargs) -> tuple[int, dict, dict]:
        return await self.call("integrations.v1.execute", chat(**kwargs.pop("body", {})), org=org, **kwargs)

    async def summary(self, org: str, **query) -> dict:
        status, body, _ = await self.call("integrations.v1.usage.summary", query, org=org)
        assert status == 200, body
        return body

    async def wait_rows(self, org: str, count: int, timeout_s: float = 15.0) -> dict:
        """Until the store holds `count` rows of `org` (events reach it asynchronously)."""
        deadline = time.monotonic() + timeout_s
        while True:
            body = await self.summary(org)
            if body["summary"]["totalRequests"] >= count or time.monotonic() > deadline:
                assert body["summary"]["totalRequests"] == count, body
                return body
            await asyncio.sleep(0.05)


def chat(**params) -> dict:
    provider = params.pop("provider", "openai")
    operation = params.pop("operation", "chat.completions")
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return {"provider": provider, "operation": operation, "params": params}


def gateway_settings(store: str, nats_url: str, data_dir: Path, llmock_url: str, **overrides) -> Settings:
    values = {
        "_env_file": None, "nats_url": nats_url, "data_dir": data_dir, "openai_base_url": llmock_url,
        "openai_api_key": OPENAI_KEY, "api_keys": CALLER_KEY, "upstream_timeout_s": 3, "heartbeat_s": 0.5,
        "worker_concurrency": 64, "drain_timeout_s": 5,
        # As the session worker: no circuits, limits or retries unless a test turns them on
        # (tests/usage/test_usage_resilience.py), so an injected upstream failure is one attempt.
        "breaker_enabled": False, "rate_limit_enabled": False, "retry_max_retries": 0,
    }
    if store == "postgres":
        values.update(database_url=PG_URL, database_schema=new_schema())
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def gateway(store: str, llmock_url: str, **overrides) -> AsyncIterator[Gateway]:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="usage-nats-")) / "js")
    url = server.start()
    data_dir = Path(tempfile.mkdtemp(prefix="usage-data-"))
    keys = KeyStore(data_dir / "api-keys.json")
    _, second = keys.create("second principal")
    _, admin = keys.create("admin", admin=True)
    settings = gateway_settings(store, url, data_dir, llmock_url, **overrides)
    app = build_app(settings)
    try:
        async with app:
            services: Services = app.services  # type: ignore[attr-defined]
            await asyncio.wait_for(services.usage.store_ready.wait(), 10)
            nc = await nats.connect(url)
            try:
                yield Gateway(url, settings, services, nc, second, admin)
            finally:
                await nc.close()
    finally:
        server.stop()


@pytest.fixture(scope="module", params=STORES)
async def gw(request, llmock) -> AsyncIterator[Gateway]:
    """One gateway per store for a test module; tests use their own org ids."""
    async with gateway(request.param, llmock.base_url) as g:
        yield g


async def stream_events(nc, org: str) -> list[dict]:
    """Every event of one org, with an ephemeral consumer (what any NATS client can do)."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"integrations.v1.events.usage.{org}", stream=STREAM)
    events = []
    try:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                return events
            for msg in msgs:
                if msg.headers:  # what the gateway publishes (the tests also publish copies without)
                    assert msg.headers["Nats-Msg-Id"] == orjson.loads(msg.data)["id"]
                events.append(orjson.loads(msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()


def new_org() -> str:
    return f"org-{secrets.token_hex(4)}"
