"""`symbia-integrations serve` as a real process tree: embedded NATS, worker and api."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import OPENAI_KEY, free_port

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "symbia-integrations")
CHAT = {"provider": "openai", "operation": "chat.completions",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Serve:
    def __init__(self, tmp_path: Path, llmock_url: str, **env: str) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATIONS_", "NATS_", "OPENAI_"))}
        self.env.update({
            "INTEGRATIONS_DATA_DIR": str(tmp_path / "data"), "INTEGRATIONS_PORT": str(self.port),
            "INTEGRATIONS_HOST": "127.0.0.1", "OPENAI_BASE_URL": llmock_url, "OPENAI_API_KEY": OPENAI_KEY,
            "INTEGRATIONS_DRAIN_TIMEOUT_S": "10", **env,
        })
        self.stderr: list[str] = []
        self.proc = subprocess.Popen([CLI, "serve"], env=self.env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout_s}s:\n{self.log}")

    def admin_key(self) -> str:
        match = re.search(r"^\s+(sym_\S+)$", self.log, re.M)
        assert match, self.log
        return match.group(1)


@pytest.fixture
def serve(tmp_path, llmock):
    instances: list[Serve] = []

    def start(**env) -> Serve:
        instance = Serve(tmp_path, llmock.base_url, **env)
        instances.append(instance)
        return instance

    yield start
    for instance in instances:
        if instance.proc.poll() is None:
            instance.proc.kill()
            instance.proc.wait(10)


def test_serve_end_to_end_and_clean_sigterm(serve, llmock):
    gw = serve()
    gw.wait_ready()
    key = gw.admin_key()
    assert re.search(r"NATS: nats://127\.0\.0\.1:\d+ \(embedded", gw.log)
    assert f"HTTP: http://127.0.0.1:{gw.port}" in gw.log
    children = descendants(gw.proc.pid)
    assert len(children) >= 3  # nats-server, worker, api

    response = httpx.post(f"{gw.url}/api/integrations/execute", json=CHAT, headers={"X-API-Key": key}, timeout=10)
    assert response.status_code == 200 and response.json()["data"]["content"]
    assert httpx.post(f"{gw.url}/api/integrations/execute", json=CHAT, timeout=10).status_code == 401

    # The plain-NATS path of the same running service (README's nats-py example).
    nats_url = re.search(r"NATS: (nats://\S+)", gw.log).group(1)
    reply = subprocess.run([sys.executable, "-c", (
        "import asyncio, nats, orjson, sys\n"
        "async def main():\n"
        f"    nc = await nats.connect('{nats_url}')\n"
        f"    msg = await nc.request('integrations.v1.execute', orjson.dumps({CHAT!r}), timeout=10,\n"
        f"                           headers={{'x-api-key': '{key}'}})\n"
        "    print(msg.headers['x-status'])\n"
        "    await nc.close()\n"
        "asyncio.run(main())\n")], capture_output=True, text=True, timeout=30)
    assert reply.stdout.strip() == "200", reply.stderr

    # A request in flight when SIGTERM arrives is finished, not dropped.
    llmock.scenario({"type": "delay", "seconds": 1.5})
    result: dict = {}

    def slow_request() -> None:
        result["response"] = httpx.post(f"{gw.url}/api/integrations/execute", json=CHAT,
                                        headers={"X-API-Key": key}, timeout=20)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    gw.proc.send_signal(signal.SIGTERM)
    thread.join(20)
    assert result["response"].status_code == 200
    assert gw.proc.wait(30) == 0, gw.log
    assert not [pid for pid in children if alive(pid)], "processes left behind"


def test_no_orphans_when_the_supervisor_is_killed(serve):
    gw = serve(INTEGRATIONS_API_KEYS="k", INTEGRATIONS_DRAIN_TIMEOUT_S="2")
    gw.wait_ready()
    children = descendants(gw.proc.pid)
    gw.proc.kill()
    gw.proc.wait(10)
    # Each child gets SIGTERM from the kernel and drains (jobs, then requests: up to 2 × 2 s).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]


def test_a_taken_nats_port_is_a_clear_error(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = serve(INTEGRATIONS_NATS_PORT=str(port))
        assert gw.proc.wait(20) == 2
        gw._reader.join(5)
    assert f"port {port}" in gw.log and "NATS_URL" in gw.log


def test_keys_cli(tmp_path):
    env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(tmp_path)}
    created = subprocess.run([CLI, "keys", "create", "--name", "ci", "--org", "acme"], env=env, capture_output=True,
                             text=True, check=True)
    key_id = re.search(r"created key (\w+)", created.stdout).group(1)
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sym_") and key not in (tmp_path / "api-keys.json").read_text()
    listed = subprocess.run([CLI, "keys", "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert key_id in listed and "org=acme" in listed and key not in listed
    assert subprocess.run([CLI, "keys", "revoke", key_id], env=env).returncode == 0
    assert subprocess.run([CLI, "keys", "revoke", key_id], env=env, capture_output=True).returncode == 1
    for command in (["--help"], ["serve", "--help"], ["worker", "--help"], ["api", "--help"], ["keys", "--help"]):
        assert subprocess.run([CLI, *command], capture_output=True).returncode == 0
    assert orjson.loads((tmp_path / "api-keys.json").read_bytes())["keys"][0]["revoked_at"]
