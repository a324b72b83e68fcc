"""Local API keys: the hashes live in `<data dir>/api-keys.json`; the keys themselves are shown
once, at creation, and never stored.

Keys are 256-bit random secrets, so one SHA-256 is enough to store them safely (slow hashes
protect guessable passwords, not random keys) and keeps the per-request check a dict lookup.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

KEY_PREFIX = "sym_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    hash: str
    created_at: str
    org: str | None = None          # None: may act in any org
    admin: bool = False
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyStore:
    """File-backed, re-read when the file changes (checked at most once a second), so keys
    created or revoked with the CLI take effect in running workers without a restart."""

    def __init__(self, path: Path, recheck_s: float = 1.0) -> None:
        self.path = path
        self._recheck_s = recheck_s
        self._checked = 0.0
        self._mtime: float | None = None
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self._records: list[ApiKeyRecord] = []

    def records(self) -> list[ApiKeyRecord]:
        self._refresh(force=True)
        return list(self._records)

    def find(self, key_hash: str) -> ApiKeyRecord | None:
        """The active key whose SHA-256 is `key_hash`."""
        self._refresh()
        record = self._by_hash.get(key_hash)
        return record if record is not None and record.active else None

    def create(self, name: str, *, org: str | None = None, admin: bool = False) -> tuple[ApiKeyRecord, str]:
        key_id = secrets.token_hex(4)
        plaintext = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKeyRecord(id=key_id, name=name, hash=hash_key(plaintext), org=org, admin=admin,
                              created_at=_now())
        with self._locked():
            self._write([*self._read(), record])
        return record, plaintext

    def revoke(self, key_id: str) -> bool:
        with self._locked():
            records = self._read()
            found = False
            for i, record in enumerate(records):
                if record.id == key_id and record.active:
                    records[i] = ApiKeyRecord(**{**asdict(record), "revoked_at": _now()})
                    found = True
            if found:
                self._write(records)
        return found

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._recheck_s:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and not force:
            return
        self._mtime = mtime
        self._records = self._read()
        self._by_hash = {r.hash: r for r in self._records}

    def _read(self) -> list[ApiKeyRecord]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [ApiKeyRecord(**item) for item in raw.get("keys", [])]

    def _write(self, records: list[ApiKeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [asdict(r) for r in records]}, f, indent=2)
        os.replace(tmp, self.path)
        self._checked = 0.0

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
