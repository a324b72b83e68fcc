"""NATS connection options of a worker: reconnect forever, optional creds file and TLS CA."""

import ssl
from typing import Any

from faststream.nats.security import NatsCredentials, NatsSecurity

from service.settings import Settings


def connect_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_reconnect_attempts": -1,   # nats-py gives up after 60 attempts by default
        "reconnect_time_wait": 1,
        "inbox_prefix": "_INBOX_worker",
    }
    ssl_context = ssl.create_default_context(cafile=str(settings.nats_tls_ca)) if settings.nats_tls_ca else None
    if settings.nats_creds:
        options["security"] = NatsCredentials(credentials=str(settings.nats_creds), ssl_context=ssl_context)
    elif ssl_context:
        options["security"] = NatsSecurity(ssl_context=ssl_context)
    return options
