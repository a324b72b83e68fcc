"""Grants: who a job runs as, with no caller credential in the stream (docs/JOBS.md).

At submission the gateway authenticates the caller exactly as for a request-reply call and
mints a *grant*: the resolved principal and organization and an expiry, signed (HS256 JWT) with
a key derived from K, the workers' shared secret (INTEGRATIONS_JOB_SIGNING_KEY). Each grant has a
*job key*, HMAC(K', grant), which only holders of K can compute and which travels only in the
reply to the grant's owner. Every job message carries the grant and its *signature*
HMAC(job key, "<id>\\n<kind>\\n<replyTo>\\n<sha256 hex of the body>").

So the stream holds a grant (not a secret: it names a principal) and a signature valid for this
one job only. Whoever reads the stream can neither forge a job nor alter one; replaying a job
message is a duplicate (same id) that the runner does not run again.
"""

import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt

from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Caller
from service.auth.principal import Principal
from service.errors import GatewayError

AUDIENCE = "symbia-integrations-jobs"
# Clock difference tolerated between the server that stamped a job and the worker that minted its grant.
LEEWAY_S = 5.0


@dataclass(frozen=True, slots=True)
class Grant:
    token: str
    job_key: bytes
    expires_at: float

    @property
    def expires_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def job_signature(job_key: bytes, job_id: str, kind: str, reply_to: str | None, body: bytes) -> str:
    message = f"{job_id}\n{kind}\n{reply_to or ''}\n{body_digest(body)}".encode()
    return hmac.new(job_key, message, hashlib.sha256).hexdigest()


def invalid(message: str) -> GatewayError:
    return GatewayError(message, ErrorCategory.auth, reason=Reason.JOB_GRANT_INVALID)


class JobSigner:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("the job signing key must have at least 32 bytes")
        # Separate keys for the two uses, so a job key can never verify as a grant and vice versa.
        self._grant_key = hmac.new(key, b"symbia-integrations/job-grant/v1", hashlib.sha256).digest()
        self._job_key_key = hmac.new(key, b"symbia-integrations/job-key/v1", hashlib.sha256).digest()
        self._clock = clock

    def mint(self, caller: Caller, ttl_s: float) -> Grant:
        p = caller.principal
        now = self._clock()
        claims = {
            "aud": AUDIENCE, "jti": uuid.uuid4().hex, "iat": int(now), "exp": int(now + ttl_s),
            "sub": p.id, "typ": p.type, "org": caller.org, "orgs": list(p.organizations)
            if p.organizations is not None else None, "ent": sorted(p.entitlements), "dorg": p.default_org,
            "name": p.name, "sa": p.super_admin,
        }
        token = jwt.encode(claims, self._grant_key, algorithm="HS256")
        return Grant(token, self.job_key(token), float(claims["exp"]))

    def job_key(self, token: str) -> bytes:
        return hmac.new(self._job_key_key, token.encode(), hashlib.sha256).digest()

    def sign(self, grant: Grant, job_id: str, kind: str, reply_to: str | None, body: bytes) -> str:
        return job_signature(grant.job_key, job_id, kind, reply_to, body)

    def verify(self, token: str | None, signature: str | None, job_id: str, kind: str, reply_to: str | None,
               body: bytes, published_at: float) -> Caller:
        """The caller a job runs as; `published_at` is the stream's timestamp of the job (set by
        the NATS server, not by the publisher). Raises a 401 GatewayError."""
        if not token or not signature:
            raise invalid("The job carries no grant (x-job-grant) or no signature (x-job-signature); "
                          "get a grant from integrations.v1.jobs.grant")
        try:
            claims = jwt.decode(token, self._grant_key, algorithms=["HS256"], audience=AUDIENCE,
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["exp", "iat", "sub", "org"]})
        except jwt.InvalidTokenError:
            raise invalid("The job's grant (x-job-grant) is not valid") from None
        if published_at > claims["exp"] + LEEWAY_S:
            raise invalid("The job's grant had expired when the job was published; get a new grant")
        expected = job_signature(self.job_key(token), job_id, kind, reply_to, body)
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise invalid("The job's signature (x-job-signature) does not match its grant, id, kind, "
                          "replyTo and body")
        orgs = claims.get("orgs")
        principal = Principal(
            id=str(claims["sub"]), type=str(claims.get("typ") or "api_key"),
            organizations=tuple(orgs) if orgs is not None else None,
            entitlements=frozenset(claims.get("ent") or ()), default_org=claims.get("dorg"),
            name=claims.get("name"), super_admin=bool(claims.get("sa")),
        )
        return Caller(principal, str(claims["org"]))


def load_signing_key(configured: str | None, path: Path) -> bytes:
    """INTEGRATIONS_JOB_SIGNING_KEY, else the key file in the data dir, created once (mode 0600).
    Workers started together race to create it; exactly one file wins and all of them read it."""
    if configured:
        return configured.encode()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)      # atomic, and fails if another process created the file first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip().encode()
    if len(key) < 32:
        raise ValueError(f"{path} holds fewer than 32 characters: delete it to generate a new job signing key, "
                         "or set INTEGRATIONS_JOB_SIGNING_KEY")
    return key
