"""Real peers for the registry and invoke tests, on loopback: httpbinx (a FastAPI httpbin with
its own OpenAPI 3.1 document) and an MCP server built with the official SDK
(tests/fakes/mcp_server.py) over streamable HTTP; an admin caller key."""

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.auth.keys import KeyStore, hash_key
from tests.conftest import CALLER_KEY, free_port, wait_http
from tests.fakes.documents import DocumentServer

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    def __init__(self, url: str, proc: subprocess.Popen) -> None:
        self.url = url
        self.proc = proc
        self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])


def start_httpbinx(port: int) -> subprocess.Popen:
    binary = Path(sys.executable).parent / "httpbinx"
    return subprocess.Popen([str(binary), "server", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_mcp_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.mcp_server", "http", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/mcp")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def httpbin() -> Iterator[Peer]:
    port = free_port()
    proc = start_httpbinx(port)
    try:
        wait_http(f"http://127.0.0.1:{port}/openapi.json", 30)
        yield Peer(f"http://127.0.0.1:{port}", proc)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def mcp_server() -> Iterator[Peer]:
    port = free_port()
    proc = start_mcp_server(port)
    try:
        yield Peer(f"http://127.0.0.1:{port}/mcp", proc)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def admin_key(data_dir: Path, worker) -> str:
    """An admin key, created after the worker started: wait until its key store reloads."""
    _, key = KeyStore(data_dir / "api-keys.json").create("registry admin", admin=True)
    store = worker.services.key_store
    deadline = time.monotonic() + 5
    while store.find(hash_key(key)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return key


@pytest.fixture
def org() -> str:
    """A fresh organization per test: the registry is shared by the whole session."""
    return f"org-{uuid.uuid4().hex[:8]}"


def as_org(org: str, key: str = CALLER_KEY) -> dict[str, str]:
    return {"X-Org-Id": org, "X-API-Key": key}


def must(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text[:2000]
    return response.json()


@pytest.fixture(scope="session")
def documents() -> Iterator[DocumentServer]:
    server = DocumentServer().start()
    yield server
    server.stop()
