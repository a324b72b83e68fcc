"""Two workers with resilience turned on, on a NATS server of their own (a worker joining the
session's queue group would take the session worker's messages), behind an HTTP adapter.

Both workers are in this process so that a test can send a request to one of them on purpose
(`cluster.run(cluster.a, ...)`) and read each one's view of the shared state; everything else
goes through HTTP and the queue group, which spreads requests over both."""

import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from api.app import create_app
from api.settings import ApiSettings
from handlers.app import build_app
from service.auth.keys import KeyStore
from service.commands import Command, Reply, run_command
from service.embedded_nats import EmbeddedNats
from tests.conftest import CALLER_KEY
from tests.registry.conftest import httpbin  # noqa: F401  (fixture)

# Small numbers so that tests are quick: 3 failures open a circuit for 2 s, 2 probes close it.
RESILIENCE = {
    "breaker_enabled": True,
    "breaker_failure_threshold": 3,
    "breaker_failure_rate": 0.0,
    "breaker_cooldown_s": 2.0,
    "breaker_success_threshold": 2,
    "rate_limit_enabled": True,
    "rate_limit_user_rpm": 0,
    "rate_limit_org_rpm": 0,
    "rate_limit_provider_rpm": 0,
    "rate_limit_user_tpm": 0,
    "rate_limit_org_tpm": 0,
    "rate_limit_provider_tpm": 0,
    "retry_max_retries": 2,
    "retry_base_delay_s": 0.05,
    "retry_max_delay_s": 3.0,
    "job_defer_max_s": 1.0,             # jobs refused for now come back within a second
}
P = "/api/integrations"
ANTHROPIC_MODEL = "claude-sonnet-4-20250514"


def chat(provider: str = "openai", model: str = "gpt-4o-mini", **extra) -> dict:
    return {"provider": provider, "operation": "chat.completions",
            "params": {"model": model, "messages": [{"role": "user", "content": "Hello"}]}, **extra}


@dataclass
class Cluster:
    a: object                    # FastStream apps (app.services: their Services)
    b: object
    http: httpx.AsyncClient
    nc: object
    admin_key: str
    handled: Counter = field(default_factory=Counter)   # replies per worker ("a"/"b") and status

    @property
    def workers(self):
        return (self.a, self.b)

    async def run(self, app, handler_name: str, body: dict, headers: dict | None = None,
                  service: str = "execute") -> tuple[Reply, dict]:
        """Send a request to one worker's handler directly (no bus, no queue group)."""
        target = getattr(app.services, service)
        handler = target if handler_name == "__call__" else getattr(target, handler_name)
        command = Command(orjson.dumps(body), {"x-api-key": CALLER_KEY, **(headers or {})}, "req_direct")
        reply = await run_command(handler, command)
        return reply, orjson.loads(reply.body)

    async def reset_circuits(self) -> None:
        for worker in self.workers:          # outcomes of earlier streams still being written
            await worker.services.resilience.breakers.settled()
        await self.a.services.resilience.breakers.reset_all()
        deadline = time.monotonic() + 3
        while any(w.services.resilience.breakers.circuits() for w in self.workers):
            if time.monotonic() > deadline:
                raise AssertionError(f"circuits did not reset on every worker: "
                                     f"{[w.services.resilience.breakers.circuits() for w in self.workers]}")
            await _sleep(0.01)

    def as_admin(self, org: str | None = None) -> dict:
        return {"X-API-Key": self.admin_key, **({"X-Org-Id": org} if org else {})}

    async def set_policy(self, org: str, policy: dict) -> dict:
        response = await self.http.put(f"{P}/orgs/{org}/policy", json=policy, headers=self.as_admin())
        assert response.status_code == 200, response.text
        want = response.json()["policy"]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:   # every worker sees it (the KV watch)
            seen = [w.services.resilience.policies.get(org) for w in self.workers]
            if all(p is not None and p.model_dump(exclude_none=True) == want for p in seen):
                return response.json()
            await _sleep(0.02)
        raise AssertionError("a worker did not see the new policy")


async def _sleep(seconds: float) -> None:
    import asyncio
    await asyncio.sleep(seconds)


@pytest.fixture(scope="package")
async def cluster(settings) -> AsyncIterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="resilience-"))
    server = EmbeddedNats(root / "js")
    url = server.start()
    data_dir = root / "data"
    data_dir.mkdir()
    _, admin_key = KeyStore(data_dir / "api-keys.json").create("resilience admin", admin=True)
    worker_settings = settings.model_copy(update={**RESILIENCE, "nats_url": url, "data_dir": data_dir})
    a, b = build_app(worker_settings), build_app(worker_settings)
    handled: Counter = Counter()
    for name, app in (("a", a), ("b", b)):
        async def observe(command, reply, name=name) -> None:
            handled[name] += 1
            handled[(name, reply.status)] += 1
        app.services.observers.append(observe)
    await a.start()
    await b.start()
    api = create_app(ApiSettings(_env_file=None, nats_url=url, worker_silence_s=3, ready_timeout_s=1))
    nc = await nats.connect(url)
    try:
        async with api.router.lifespan_context(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                         headers={"X-API-Key": CALLER_KEY}, timeout=30) as client:
                yield Cluster(a, b, client, nc, admin_key, handled)
    finally:
        await nc.close()
        await a.stop()
        await b.stop()
        server.stop()


@pytest.fixture(autouse=True)
async def _closed_circuits(cluster) -> AsyncIterator[None]:
    """Every test starts with every circuit closed, on both workers."""
    await cluster.reset_circuits()
    yield


@pytest.fixture
def org() -> str:
    return f"res-{uuid.uuid4().hex[:8]}"
