"""The processes a `python -m bench` run measures, started as in production: the bench mock
upstream, a nats-server with JetStream in a temp dir (the venv's binary, the repo's nats.conf,
as `serve` embeds it), then `symbia-integrations api` and N `symbia-integrations worker`
processes, each its own process (the CLI execs, so the pids are the processes measured)."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import stats
from service.embedded_nats import EmbeddedNats, find_config
from service.process import die_with_parent

KEY = "bench-key"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g}s")


@dataclass
class Served:
    """`symbia-integrations serve` (embedded NATS, worker, api) in front of the bench mock."""

    mock_url: str
    url: str
    nats_url: str
    work: Path
    process: subprocess.Popen


@contextlib.contextmanager
def served(prefix: str, env: dict[str, str | None] | None = None, mock_args: Sequence[str] = (),
           prepare: Callable[[Path], None] | None = None) -> Iterator[Served]:
    """The feature benchmarks' gateway: the mock, then `serve` with a caller key, the mock as
    OpenAI and rate limits off (one key sends thousands of requests a minute; bench/resilience.py
    measures what the limits cost); `env` adds or overrides settings (None: unset), `prepare(work dir)` runs
    before `serve` starts. Stops both on exit."""
    mock_port, http_port = free_port(), free_port()
    mock = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(mock_port), *mock_args])
    work = Path(tempfile.mkdtemp(prefix=prefix))
    full_env = {**os.environ, "INTEGRATIONS_DATA_DIR": str(work), "INTEGRATIONS_PORT": str(http_port),
                "INTEGRATIONS_HOST": "127.0.0.1", "OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
                "OPENAI_API_KEY": "sk-bench", "INTEGRATIONS_API_KEYS": KEY,
                "INTEGRATIONS_RATE_LIMIT_ENABLED": "false", "NATS_URL": None, **(env or {})}
    full_env = {name: value for name, value in full_env.items() if value is not None}
    if prepare is not None:
        prepare(work)
    log = work / "serve.log"
    serve = subprocess.Popen([str(BIN / "symbia-integrations"), "serve"], env=full_env, cwd=work,
                             stderr=log.open("w"))
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_http(f"{url}/health/ready", serve)
        found = re.search(r"NATS: (nats://\S+)", log.read_text())
        if found is None:
            raise RuntimeError(f"serve did not report its NATS url (log: {log})")
        yield Served(f"http://127.0.0.1:{mock_port}", url, found.group(1), work, serve)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        mock.terminate()
        mock.wait(10)


class Mock:
    def __init__(self, delay_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(self.port),
                                         "--delay-ms", str(delay_ms)],
                                        preexec_fn=die_with_parent)  # no orphans if the harness is killed
        wait_http(f"{self.url}/openapi.json", self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Gateway:
    """nats-server + api + workers against the mock; start() returns once every worker logged
    that it is ready and the api answers /health/ready."""

    def __init__(self, mock: Mock, workers: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers_n = workers
        self.env = {
            **os.environ, "INTEGRATIONS_DATA_DIR": str(self.work / "data"), "INTEGRATIONS_PORT": str(self.port),
            "INTEGRATIONS_HOST": "127.0.0.1", "OPENAI_BASE_URL": f"{mock.url}/v1", "OPENAI_API_KEY": "sk-bench",
            "HUGGINGFACE_BASE_URL": mock.url, "HF_TOKEN": "hf-bench", "INTEGRATIONS_API_KEYS": KEY,
            # one key sends thousands of requests a second: no per-user limit (bench/resilience.py
            # measures what the limits cost); the mock is on loopback, which the outbound guard refuses
            "INTEGRATIONS_RATE_LIMIT_ENABLED": "false", "INTEGRATIONS_OUTBOUND_ALLOW": "127.0.0.1",
            "INTEGRATIONS_LOG_LEVEL": "INFO",  # production default; the workers log "ready on" at INFO
            **(extra_env or {}),
        }
        for name in ("NATS_URL", "DATABASE_URL", "IDENTITY_SERVICE_URL", "CATALOG_SERVICE_URL"):
            self.env.pop(name, None)
        self.nats: EmbeddedNats | None = None
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.idle: dict[str, float] = {}

    @property
    def nats_url(self) -> str:
        assert self.nats and self.nats.url
        return self.nats.url

    def _spawn(self, command: str, log: Path) -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "symbia-integrations"), command], env=self.env, cwd=self.work,
                                stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)

    def start(self, timeout_s: float = 60) -> None:
        (self.work / "data").mkdir()
        self.nats = EmbeddedNats(self.work / "jetstream", 0, find_config(None))
        self.env["NATS_URL"] = self.nats.start()
        self.workers = [self._spawn("worker", self.work / f"worker{i}.log") for i in range(self.workers_n)]
        deadline = time.monotonic() + timeout_s
        for i, worker in enumerate(self.workers):
            log = self.work / f"worker{i}.log"
            while "ready on" not in log.read_text():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {i} did not start:\n{self.log_tail(log)}")
                time.sleep(0.1)
        self.api = self._spawn("api", self.work / "api.log")
        try:
            wait_http(f"{self.url}/health/ready", self.api, max(1.0, deadline - time.monotonic()))
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail(self.work / 'api.log')}") from None
        time.sleep(1.0)  # let start-up work (registry sync, usage store) settle before the idle RSS
        self.idle = {"api_rss_mb": stats.process_memory_mb(self.api.pid)[0],
                     "worker_rss_mb": max(stats.process_memory_mb(w.pid)[0] for w in self.workers)}

    @staticmethod
    def log_tail(path: Path, chars: int = 3000) -> str:
        try:
            return path.read_text()[-chars:]
        except OSError:
            return "(no log)"

    def pids(self) -> dict[str, list[int]]:
        return {"api": [self.api.pid] if self.api else [], "worker": [w.pid for w in self.workers],
                "nats": [self.nats.process.pid] if self.nats and self.nats.process else []}

    def cpu_s(self) -> dict[str, float]:
        """utime + stime so far of api, workers (summed) and nats-server."""
        return {role: sum(stats.process_cpu_s(pid) for pid in pids) for role, pids in self.pids().items()}

    def memory(self) -> dict[str, float]:
        """Current and peak (VmHWM) RSS in MB of the api and of the largest worker."""
        api_rss, api_hwm = stats.process_memory_mb(self.api.pid)
        workers = [stats.process_memory_mb(w.pid) for w in self.workers]
        return {"api_rss_mb": api_rss, "api_peak_mb": api_hwm,
                "worker_rss_mb": max(w[0] for w in workers), "worker_peak_mb": max(w[1] for w in workers)}

    def alive(self) -> list[str]:
        """Names of processes that exited (should be empty)."""
        dead = [f"worker{i} (exit {w.returncode})" for i, w in enumerate(self.workers) if w.poll() is not None]
        if self.api and self.api.poll() is not None:
            dead.append(f"api (exit {self.api.returncode})")
        return dead

    def stop(self, remove: bool = False) -> None:
        for proc in [self.api, *self.workers]:
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [self.api, *self.workers]:
            if proc:
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.nats:
            self.nats.stop()
        if remove:
            shutil.rmtree(self.work, ignore_errors=True)
