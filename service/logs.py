"""Logging set-up shared by the processes, and masking of credentials in URLs."""

import logging
import sys
from urllib.parse import urlsplit, urlunsplit


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def mask_url(url: str) -> str:
    """`nats://user:secret@host:4222` → `nats://user:***@host:4222` (and tokens: `***@host`)."""
    masked = []
    for part in url.split(","):
        split = urlsplit(part.strip())
        if split.username or split.password:
            host = split.hostname or ""
            if split.port:
                host = f"{host}:{split.port}"
            userinfo = f"{split.username}:***" if split.password else "***"
            split = split._replace(netloc=f"{userinfo}@{host}")
        masked.append(urlunsplit(split))
    return ",".join(masked)
