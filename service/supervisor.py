"""`symbia-integrations serve`: everything in one command.

Starts the embedded NATS server when NATS_URL is unset, then the worker process(es) and the
HTTP adapter as separate processes (on a small machine api and worker in separate processes
beat one process: reference/perf-notes.md). SIGTERM or Ctrl-C drains: the api stops taking
requests and finishes in-flight ones, then the workers drain, then NATS stops. Children run
in their own session (a terminal's Ctrl-C reaches only the supervisor, which stops them in
order) and die with the supervisor even if it is killed.
"""

import logging
import os
import signal
import subprocess
import sys
import time

from service.auth.keys import KeyStore
from service.embedded_nats import EmbeddedNats, EmbeddedNatsError, find_config, port_is_free
from service.logs import mask_url
from service.process import die_with_parent
from service.providers.configured import check_provider_config
from service.settings import Settings

log = logging.getLogger("symbia.integrations.serve")


def bootstrap_admin_key(settings: Settings) -> str | None:
    """On first start with no caller keys at all, create an admin key and return it (once)."""
    store = KeyStore(settings.key_store_path)
    if settings.configured_api_keys or any(r.active for r in store.records()):
        return None
    _, plaintext = store.create("admin (generated on first serve)", admin=True)
    return plaintext


def _announce_key(key: str, settings: Settings) -> None:
    bar = "=" * 78
    print(f"\n{bar}\n  Generated an admin API key (shown once; only its hash is stored in "
          f"{settings.key_store_path}):\n\n      {key}\n\n"
          f"  Use it as `X-API-Key: <key>` or `Authorization: Bearer <key>`.\n"
          f"  Manage keys with `symbia-integrations keys create|list|revoke`.\n{bar}\n",
          file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nats: EmbeddedNats | None = None
        self.workers: list[subprocess.Popen] = []
        self.api: subprocess.Popen | None = None
        self._stop_signal: int | None = None

    def _spawn(self, module: str, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True,
                                preexec_fn=die_with_parent)

    def _on_signal(self, signum, _frame) -> None:
        self._stop_signal = signum

    def run(self) -> int:
        settings = self.settings
        if problem := check_provider_config(settings):  # before any process starts
            log.error("%s", problem)
            return 2
        if not port_is_free(settings.port, settings.host if settings.host not in ("", "0.0.0.0") else "0.0.0.0"):
            log.error("HTTP port %d is already taken: set INTEGRATIONS_PORT to a free port", settings.port)
            return 2
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        key = bootstrap_admin_key(settings)
        if key:
            _announce_key(key, settings)

        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            url = self._nats_url()
        except EmbeddedNatsError as exc:
            log.error("%s", exc)
            return 2
        env = {**os.environ, "NATS_URL": url, "INTEGRATIONS_DATA_DIR": str(settings.data_dir.resolve())}
        try:
            self.workers = [self._spawn("handlers", env) for _ in range(settings.workers)]
            self.api = self._spawn("api", env)
            host = "127.0.0.1" if settings.host in ("", "0.0.0.0") else settings.host
            log.info("HTTP: http://%s:%d (listening on %s)", host, settings.port, settings.host)
            return self._wait()
        finally:
            self._shutdown()

    def _nats_url(self) -> str:
        if self.settings.nats_url:
            log.info("NATS: %s (NATS_URL)", mask_url(self.settings.nats_url))
            return self.settings.nats_url
        self.nats = EmbeddedNats(self.settings.data_dir / "jetstream", self.settings.nats_port,
                                 find_config(self.settings.nats_config))
        url = self.nats.start()
        log.info("NATS: %s (embedded nats-server, pid %d, log %s)", url, self.nats.process.pid, self.nats.log_path)
        return url

    def _wait(self) -> int:
        children = [*self.workers, self.api]
        while self._stop_signal is None:
            for child in children:
                code = child.poll()
                if code is not None:
                    name = "api" if child is self.api else "worker"
                    log.error("%s process %d exited with %s; stopping", name, child.pid, code)
                    return 1
            if self.nats and self.nats.process.poll() is not None:
                log.error("embedded nats-server exited; stopping")
                return 1
            time.sleep(0.2)
        log.info("received %s: draining", signal.Signals(self._stop_signal).name)
        return 0

    def _shutdown(self) -> None:
        grace = self.settings.drain_timeout_s + 5
        if self.api:
            _stop(self.api, grace)
        for worker in self.workers:  # drain all workers at once
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            _stop(worker, grace)
        if self.nats:
            self.nats.stop()
        log.info("stopped")


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
