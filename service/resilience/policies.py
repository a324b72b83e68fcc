"""Org policies: per-org rate-limit overrides and default fallback chains, in the KV bucket
`integrations-org-policies` (one key per org), watched by every worker so that a change applies
everywhere within a second and reads cost nothing. Written by admins through
`PUT /api/integrations/orgs/{org}/policy`."""

from datetime import UTC, datetime

import orjson
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError

from contracts import subjects
from contracts.resilience import OrgPolicy
from service.kvwatch import WatchedBucket
from service.resilience.names import token


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OrgPolicies:
    def __init__(self) -> None:
        self._policies: dict[str, tuple[OrgPolicy, str | None]] = {}
        self._bucket = WatchedBucket(KeyValueConfig(bucket=subjects.POLICY_BUCKET, history=1,
                                                    description="per-org rate limits and fallback chains"),
                                     self._on_update)
        self._kv = None

    async def start(self, nc: Client, replicas: int = 1) -> None:
        self._kv = await self._bucket.start(nc, replicas)

    async def close(self) -> None:
        await self._bucket.close()

    def _on_update(self, key: str, value: bytes | None, _revision: int) -> None:
        if value is None:
            self._policies.pop(key, None)
            return
        raw = orjson.loads(value)
        self._policies[key] = (OrgPolicy.model_validate(raw.get("policy") or {}), raw.get("updatedAt"))

    def get(self, org: str) -> OrgPolicy | None:
        found = self._policies.get(token(org))
        return found[0] if found else None

    def updated_at(self, org: str) -> str | None:
        found = self._policies.get(token(org))
        return found[1] if found else None

    async def put(self, org: str, policy: OrgPolicy) -> str:
        updated = _now()
        value = orjson.dumps({"org": org, "policy": policy.model_dump(exclude_none=True), "updatedAt": updated})
        key = token(org)
        if self._kv is not None:
            await self._kv.put(key, value)
        self._policies[key] = (policy, updated)
        return updated

    async def delete(self, org: str) -> None:
        key = token(org)
        if self._kv is not None:
            try:
                await self._kv.delete(key)
            except KeyNotFoundError:
                pass
        self._policies.pop(key, None)
