"""Provider credentials: callers never hold provider keys; the gateway resolves them.

A resolver answers "which key does this caller use for this provider (or integration key)",
or None; the pipeline decides whether a missing key is an error. Resolvers:

* `IdentityCredentials` (service/identity/credentials.py): personal and org-wide keys stored in
  the Identity service (Identity mode).
* `FileCredentials`: INTEGRATIONS_CREDENTIALS_FILE, a JSON object org → provider → key.
* `EnvCredentials`: one key per provider from the gateway's environment (OPENAI_API_KEY, ...).

`ChainCredentials` asks them in that order. A caller may name a credential (`credentialId` on
execute); a named credential that no resolver can give this caller is a 403, never a silent
fallback to another key.
"""

import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from contracts.envelope import ErrorCategory, Reason
from service.auth.access import Caller
from service.errors import GatewayError

log = logging.getLogger("symbia.integrations.credentials")

# Whose key it is, recorded with each call (usage): the caller's own, its org's shared key,
# the gateway's own service credential, or the gateway's environment/config.
CredentialSource = Literal["personal", "org-wide", "service", "env", "none"]


@dataclass(frozen=True, slots=True)
class Credential:
    api_key: str | None = field(repr=False)
    source: CredentialSource
    credential_id: str | None = None


NO_CREDENTIAL = Credential(api_key=None, source="none")


class CredentialResolver(Protocol):
    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None: ...

    def where_to_add(self, provider: str) -> str:
        """Tells a user where the missing key for `provider` belongs."""
        ...


def credential_missing(resolver: CredentialResolver, provider: str, operation: str | None) -> GatewayError:
    return GatewayError(
        f"No {provider} API key configured. {resolver.where_to_add(provider)}",
        ErrorCategory.auth, status=400, reason=Reason.PROVIDER_CREDENTIAL_MISSING,
        provider=provider, operation=operation,
    )


def credential_forbidden(credential_id: str, caller: Caller, provider: str) -> GatewayError:
    # One answer for "no such credential" and "someone else's": ids cannot be probed.
    return GatewayError(
        f"Credential {credential_id} does not exist or is not available to you in organization {caller.org}",
        ErrorCategory.auth, status=403, reason=Reason.CREDENTIAL_FORBIDDEN, provider=provider,
    )


class EnvCredentials:
    """One key per provider from the gateway's own environment (any caller, any org)."""

    def __init__(self, keys: dict[str, str | None], env_names: dict[str, tuple[str, ...]]) -> None:
        self._keys = {name: Credential(api_key=key, source="env", credential_id=f"env:{name}")
                      for name, key in keys.items() if key}
        self._env_names = env_names

    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None:
        found = self._keys.get(provider)
        if found is not None and credential_id is not None and credential_id != found.credential_id:
            return None
        return found

    def where_to_add(self, provider: str) -> str:
        names = self._env_names.get(provider)
        if names:
            return f"Set {' or '.join(names)} in the gateway's environment."
        return "Configure a key for it in the gateway's environment."


class CredentialsFileError(RuntimeError):
    pass


class FileCredentials:
    """INTEGRATIONS_CREDENTIALS_FILE: `{"<org>": {"<provider>": "<key>", ...}, ...}`.

    Keys of an org serve every caller acting in that org (source `org-wide`, id
    `file:<org>:<provider>`). The file must not be readable by group or others (as ssh treats
    private keys): such a file is refused at start-up, and ignored with an error in the log if
    it becomes so later. It is re-read when it changes (checked at most once a second).
    Contents are never logged or echoed; errors name the file and the problem only.
    """

    def __init__(self, path: Path, recheck_s: float = 1.0) -> None:
        self.path = path
        self._recheck_s = recheck_s
        self._checked = 0.0
        self._mtime: float | None = None
        self._keys: dict[tuple[str, str], str] = {}
        self._keys = self._load()      # raises CredentialsFileError: refuse to start with a bad file
        self._mtime = self._stat().st_mtime

    def _stat(self) -> os.stat_result:
        try:
            return self.path.stat()
        except OSError as exc:
            raise CredentialsFileError(f"credentials file {self.path}: {exc.strerror}") from None

    def _load(self) -> dict[tuple[str, str], str]:
        mode = self._stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsFileError(
                f"credentials file {self.path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {self.path}`")
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise CredentialsFileError(f"credentials file {self.path} is not valid JSON ({type(exc).__name__} at "
                                       f"{getattr(exc, 'lineno', '?')}:{getattr(exc, 'colno', '?')})") from None
        if not isinstance(raw, dict):
            raise CredentialsFileError(f"credentials file {self.path} must hold a JSON object org → provider → key")
        keys: dict[tuple[str, str], str] = {}
        for org, providers in raw.items():
            if not isinstance(providers, dict):
                raise CredentialsFileError(f"credentials file {self.path}: the value of org {org!r} must be an "
                                           "object provider → key")
            for provider, key in providers.items():
                if not isinstance(key, str) or not key.strip():
                    raise CredentialsFileError(f"credentials file {self.path}: {org!r} → {provider!r} must be a "
                                               "non-empty string")
                keys[(org, provider)] = key.strip()
        return keys

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._recheck_s:
            return
        self._checked = now
        try:
            mtime = self._stat().st_mtime
            if mtime == self._mtime:
                return
            self._mtime = mtime
            self._keys = self._load()
        except CredentialsFileError as exc:
            log.error("%s; serving no keys from it until it is fixed", exc)
            self._keys = {}

    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None:
        self._refresh()
        key = self._keys.get((caller.org, provider))
        if key is None:
            return None
        found = Credential(api_key=key, source="org-wide", credential_id=f"file:{caller.org}:{provider}")
        if credential_id is not None and credential_id != found.credential_id:
            return None
        return found

    def where_to_add(self, provider: str) -> str:
        return f"Add it under your organization in {self.path.name}."


class ChainCredentials:
    """The first resolver that has a key wins; the first resolver says where keys belong."""

    def __init__(self, resolvers: list[CredentialResolver]) -> None:
        self.resolvers = resolvers

    async def resolve(self, caller: Caller, provider: str, credential_id: str | None) -> Credential | None:
        for resolver in self.resolvers:
            found = await resolver.resolve(caller, provider, credential_id)
            if found is not None and found.api_key:
                return found
        if credential_id is not None:
            raise credential_forbidden(credential_id, caller, provider)
        return None

    def where_to_add(self, provider: str) -> str:
        return self.resolvers[0].where_to_add(provider)
