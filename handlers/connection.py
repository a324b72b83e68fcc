"""NATS connection options of a worker: reconnect forever, optional creds file, TLS CA and client certificate."""

import logging
import time
from typing import Any

from faststream.nats.security import NatsCredentials, NatsSecurity, NatsUserPassword

from contracts.natsurl import split_credentials
from service.settings import Settings

log = logging.getLogger("symbia.integrations.worker")


class _QuietErrors:
    """nats-py logs a traceback per failed reconnect attempt; one line every 10 s is enough."""

    def __init__(self) -> None:
        self._last = 0.0

    async def __call__(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last > 10:
            self._last = now
            log.warning("bus: %s", exc or type(exc).__name__)


def connect_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_reconnect_attempts": -1,   # nats-py gives up after 60 attempts by default
        "reconnect_time_wait": 1,
        "inbox_prefix": "_INBOX_worker",
        "error_cb": _QuietErrors(),
    }
    ssl_context = settings.nats_tls_context()
    _, auth = split_credentials(settings.nats_servers)
    if settings.nats_creds:
        options["security"] = NatsCredentials(credentials=str(settings.nats_creds), ssl_context=ssl_context)
    elif "password" in auth:
        options["security"] = NatsUserPassword(auth["user"], auth["password"], ssl_context=ssl_context)
    elif ssl_context:
        options["security"] = NatsSecurity(ssl_context=ssl_context)
    if "token" in auth:
        options["token"] = auth["token"]
    return options
