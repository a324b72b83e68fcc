"""Session fixtures: a private nats-server, llmock and the HuggingFace fake as real servers on
loopback, an in-process worker and HTTP adapter connected to that private server.

Nothing here touches a NATS server that happens to run on the machine: the session starts
its own on a random port with a temporary JetStream store.
"""

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from handlers.app import build_app
from service.auth.keys import KeyStore
from service.embedded_nats import EmbeddedNats
from service.settings import Settings
from tests.fakes.huggingface import API_KEY as HF_KEY
from tests.fakes.huggingface import FakeHuggingFace
from tests.fakes.models_service import FakeModelsService

CALLER_KEY = "test-caller-key"
OPENAI_KEY = "sk-test-0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789"
# Credentials of integrations registered by tests/registry, as "<org>/<key>" (org-scoped
# entries) or "<key>" (global entries only).
CREDS_ORG = "creds"
REGISTRY_CREDENTIALS = {
    f"{CREDS_ORG}/hb-bearer": "bearer-secret-123",
    f"{CREDS_ORG}/hb-apikey": "apikey-secret-456",
    f"{CREDS_ORG}/hb-query": "query-secret-789",
    f"{CREDS_ORG}/hb-basic": "alice:wonder land",
    f"{CREDS_ORG}/hb-path": "c2VjcmV0LWluLXBhdGg=",      # base64 of "secret-in-path" (httpbinx /base64 decodes it)
    f"{CREDS_ORG}/mcp-auth": "mcp-token-abc",
    f"{CREDS_ORG}-secrets/mcp-auth": "mcp-token-def",
    "global-bearer": "global-secret-ghi",
    "catalog-telegram": "bot-token-4711",               # the Catalog integration of tests/registry/test_catalog_*
}

# Settings must come from the fixtures, not from the developer's shell or a .env file.
for name in list(os.environ):
    if name.startswith(("INTEGRATIONS_", "OPENAI_", "HUGGINGFACE_", "NATS_")) or name in (
            "HF_TOKEN", "PORT", "HOST", "DATABASE_URL"):
        del os.environ[name]
    elif name in ("IDENTITY_SERVICE_URL", "CATALOG_SERVICE_URL"):   # would switch the workers to Identity mode
        del os.environ[name]
# ... nor the keys and URLs of the other providers (docs/PROVIDERS.md).
for name in list(os.environ):
    if name.startswith(("ANTHROPIC_", "MODELS_SERVICE_", "GEMINI_", "GOOGLE_API_KEY", "MISTRAL_", "COHERE_",
                        "CO_API_KEY", "GROQ_", "TOGETHER_", "OLLAMA_", "VLLM_")):
        del os.environ[name]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout_s}s")


class LLMock:
    """The llmock server (pip `llmock`) as a subprocess, with its admin API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = f"{url}/v1"

    def scenario(self, *behaviors: dict) -> None:
        httpx.post(f"{self.url}/_llmock/scenario", json={"behaviors": list(behaviors)}).raise_for_status()

    def clear_scenario(self) -> None:
        """Drop the queued behaviours (the upstream recovers); the request journal stays."""
        httpx.delete(f"{self.url}/_llmock/scenario").raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_llmock/reset").raise_for_status()

    def requests(self) -> list[dict]:
        return httpx.get(f"{self.url}/_llmock/requests").json()["requests"]


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    # No config file: the server keeps NATS's default 1 MB max_payload, so the claim-check
    # path for large payloads is exercised.
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="test-nats-")) / "js")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def llmock() -> Iterator[LLMock]:
    port = free_port()
    binary = Path(sys.executable).parent / "llmock"
    proc = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield LLMock(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(autouse=True)
def _clean_llmock(request) -> None:
    if "llmock" in request.fixturenames:
        request.getfixturevalue("llmock").reset()


@pytest.fixture(scope="session")
def hf_fake() -> Iterator[FakeHuggingFace]:
    server = FakeHuggingFace().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def models_service() -> Iterator[FakeModelsService]:
    """The Symbia Models service behind the symbia-labs provider."""
    server = FakeModelsService().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="test-data-"))


@pytest.fixture(scope="session")
def acme_key(data_dir: Path) -> str:
    """A stored key restricted to org `acme` (created before any worker reads the store)."""
    _, key = KeyStore(data_dir / "api-keys.json").create("acme service", org="acme")
    return key


@pytest.fixture(scope="session")
def settings(nats_url: str, llmock: LLMock, hf_fake: FakeHuggingFace, data_dir: Path, acme_key: str,
             models_service: FakeModelsService) -> Settings:
    return Settings(
        _env_file=None,
        nats_url=nats_url,
        data_dir=data_dir,
        openai_base_url=llmock.base_url,
        openai_api_key=OPENAI_KEY,
        huggingface_base_url=hf_fake.url,
        huggingface_api_key=HF_KEY,
        api_keys=CALLER_KEY,
        upstream_timeout_s=3,
        heartbeat_s=0.5,
        worker_concurrency=64,
        stream_ack_timeout_s=1.0,
        anthropic_base_url=f"{llmock.url}/anthropic",   # llmock serves the Messages API there
        anthropic_api_key=ANTHROPIC_KEY,
        models_service_url=models_service.url,
        # registry and invoke (tests/registry): loopback peers, their credentials, the stdio test server
        outbound_allow="127.0.0.1",
        integration_credentials=REGISTRY_CREDENTIALS,
        mcp_stdio_allow=shlex.join([sys.executable, "-m", "tests.fakes.mcp_server", "stdio"]),
        invoke_timeout_s=5,
        mcp_timeout_s=5,
        mcp_page_size=25,               # tests/registry/mcp_endpoint: tools/list spans pages
        # Resilience is tested with workers of its own (tests/resilience): the shared worker must
        # not trip circuits, throttle or retry while other tests inject upstream failures.
        breaker_enabled=False,
        rate_limit_enabled=False,
        retry_max_retries=0,
    )


@pytest.fixture(scope="session")
async def worker(settings: Settings) -> AsyncIterator:
    app = build_app(settings)
    async with app:
        yield app


@pytest.fixture(scope="session")
def api_settings(nats_url: str) -> ApiSettings:
    return ApiSettings(_env_file=None, nats_url=nats_url, worker_silence_s=3, ready_timeout_s=1)


@pytest.fixture(scope="session")
async def http(worker, api_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     headers={"X-API-Key": CALLER_KEY}, timeout=30) as client:
            yield client


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator:
    """A plain nats-py client: what a Symbia service not written with FastStream uses."""
    import nats

    client = await nats.connect(nats_url)
    yield client
    await client.close()
