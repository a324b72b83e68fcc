"""Names of circuits and rate-limit buckets: KV keys and NATS subject tokens, so each part is
one safe token (`[A-Za-z0-9_=-]`, `:` written `=` as the registry does); anything else is replaced
by a short hash."""

import hashlib
import re

_SAFE = re.compile(r"^[A-Za-z0-9_=-]{1,64}$")


def token(value: str) -> str:
    """`value` itself when it is a safe token, else `h-<hash>` (stable, reveals nothing)."""
    written = value.replace(":", "=")
    if _SAFE.match(written):
        return written
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:20]


def provider_circuit(provider: str, credential_id: str | None = None) -> str:
    """`openai`, or `openai.c-<hash>` for one credential (INTEGRATIONS_BREAKER_PER_CREDENTIAL)."""
    if credential_id:
        return f"{token(provider)}.c-{hashlib.sha256(credential_id.encode()).hexdigest()[:12]}"
    return token(provider)


INTEGRATION_PREFIX = "integration"


def integration_circuit(org: str | None, key: str) -> str:
    """`integration.<key>` (global entry) or `integration.<org>.<key>` (an org's own)."""
    if org is None:
        return f"{INTEGRATION_PREFIX}.{token(key)}"
    return f"{INTEGRATION_PREFIX}.{token(org)}.{token(key)}"


def valid_circuit(name: str) -> bool:
    """A name that can be a KV key and subject (reset requests name circuits)."""
    parts = name.split(".")
    return 1 <= len(parts) <= 4 and all(_SAFE.match(p) for p in parts)
