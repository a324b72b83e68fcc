"""Rate limits that hold across every worker: token buckets per user (within an org), per org and
per provider, in requests and LLM tokens per minute.

Consistency model (docs/RESILIENCE.md):
* Each bucket's level lives in the KV bucket `integrations-ratelimits` as (tokens, time). A
  worker takes tokens with a compare-and-set write of the key, so every token is taken once:
  across all workers, a bucket never admits more than a single bucket would (no over-admission).
* To keep NATS off the hot path, a worker takes a *lease*: a share of the limit
  (INTEGRATIONS_RATE_LIMIT_LEASE, 5%, at least one) at a time, and serves requests from it in
  memory. Unused lease tokens go back to the shared bucket after INTEGRATIONS_RATE_LIMIT_LEASE_TTL_S.
  The error is one-sided: a request can be refused while other workers hold unused leased tokens,
  at most (workers - 1) x lease tokens per bucket, for at most the lease TTL.
* Token (TPM) charges are reserved before the call (the request's maxTokens plus an estimate of
  its prompt) and corrected after it from the usage the provider reported; an under-estimate
  becomes a debt that delays the next calls.
* When the KV bucket cannot be reached the limiter lets requests through (logged): availability
  over strictness.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from contracts import headers as h
from contracts import subjects
from contracts.envelope import ErrorCategory, Reason
from contracts.resilience import EffectiveLimits
from service.auth.access import Caller
from service.errors import GatewayError
from service.kvwatch import open_bucket
from service.resilience.buckets import Level, until_full, wait_for
from service.resilience.names import token
from service.resilience.policies import OrgPolicies

log = logging.getLogger("symbia.integrations.resilience")

_CAS_ATTEMPTS = 8
_ROUNDS = 4
# Untouched keys expire from the KV bucket (an expired key reads as a full bucket); long enough
# for a debt of several minutes' worth of tokens to refill first.
_KEY_TTL_S = 900.0
_IDLE_FORGET_S = 600.0

_REASONS = {
    ("user", "requests"): Reason.RATE_LIMIT_USER_REQUESTS, ("user", "tokens"): Reason.RATE_LIMIT_USER_TOKENS,
    ("org", "requests"): Reason.RATE_LIMIT_ORG_REQUESTS, ("org", "tokens"): Reason.RATE_LIMIT_ORG_TOKENS,
    ("provider", "requests"): Reason.RATE_LIMIT_PROVIDER_REQUESTS,
    ("provider", "tokens"): Reason.RATE_LIMIT_PROVIDER_TOKENS,
}


@dataclass(frozen=True, slots=True)
class Limit:
    key: str              # KV key of the shared bucket
    limit: int            # per minute; 0 = unlimited
    scope: str            # user | org | provider
    unit: str             # requests | tokens
    name: str             # the provider or org, for messages


@dataclass(frozen=True, slots=True)
class LimitDefaults:
    user_rpm: int = 0
    org_rpm: int = 0
    user_tpm: int = 0
    org_tpm: int = 0
    provider_rpm: Callable[[str], int] = lambda _p: 0
    provider_tpm: Callable[[str], int] = lambda _p: 0


@dataclass(slots=True)
class Permit:
    """What one call took: its token charges are corrected by `RateLimiter.settle`."""

    charges: list[tuple[Limit, float]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class _Bucket:
    """This worker's view of one shared bucket: its lease and the last shared level it saw."""

    __slots__ = ("expires", "lease", "level", "limit", "lock", "revision", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lease = 0.0
        self.expires = 0.0
        self.level: Level | None = None
        self.revision = 0
        self.lock = asyncio.Lock()
        self.used = time.monotonic()

    def remaining(self, now: float) -> float:
        shared = self.level.now(self.limit, now) if self.level is not None else float(self.limit)
        return shared + self.lease


def rejected(limit: Limit, retry_after_s: float, *, possible: bool = True) -> GatewayError:
    seconds = max(1, math.ceil(retry_after_s))
    per = f"{limit.limit} {limit.unit} per minute"
    if limit.scope == "user":
        text = f"Rate limit exceeded: {per} per user"
    elif limit.scope == "org":
        text = f"Organization rate limit exceeded: {per} for organization {limit.name}"
    else:
        text = f"{limit.name} rate limit exceeded: the platform allows {per} to {limit.name}"
    if possible:
        text += f". Try again in {seconds}s."
    else:
        text += "; this request alone needs more than that."
    headers = {h.RATELIMIT_LIMIT: str(limit.limit), h.RATELIMIT_REMAINING: "0",
               h.RATELIMIT_RESET: str(seconds)}
    if possible:
        headers[h.RETRY_AFTER] = str(seconds)
    return GatewayError(text, ErrorCategory.rate_limit, status=429, retryable=possible,
                        reason=_REASONS[(limit.scope, limit.unit)],
                        provider=limit.name if limit.scope == "provider" else None, headers=headers)


class RateLimiter:
    def __init__(self, defaults: LimitDefaults, policies: OrgPolicies, *, enabled: bool = True,
                 lease_fraction: float = 0.05, lease_ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.defaults = defaults
        self.policies = policies
        self.enabled = enabled
        self._lease_fraction = lease_fraction
        self._lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._kv = None
        self._sweeper: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._last_warning = 0.0

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, nc: Client, replicas: int = 1) -> None:
        self._kv = await open_bucket(nc, KeyValueConfig(bucket=subjects.RATE_LIMIT_BUCKET, history=1, ttl=_KEY_TTL_S,
                                                        replicas=replicas, description="rate-limit token buckets"))
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._return_leases(force=True), 2.0)

    # --- which limits apply ---------------------------------------------------------------------

    def effective(self, org: str) -> EffectiveLimits:
        d = self.defaults
        o = self.policies.get(org)
        r = o.rateLimits if o is not None else None

        def pick(override: int | None, default: int) -> int:
            return default if override is None else override

        if r is None:
            return EffectiveLimits(userRpm=d.user_rpm, userTpm=d.user_tpm, orgRpm=d.org_rpm, orgTpm=d.org_tpm)
        return EffectiveLimits(userRpm=pick(r.userRpm, d.user_rpm), userTpm=pick(r.userTpm, d.user_tpm),
                               orgRpm=pick(r.orgRpm, d.org_rpm), orgTpm=pick(r.orgTpm, d.org_tpm))

    def caller_limits(self, caller: Caller, *, tokens: bool) -> list[Limit]:
        if not self.enabled:
            return []
        org = caller.org
        e = self.effective(org)
        org_key = token(org)
        user_key = f"u.{org_key}.{token(caller.principal.id)}"
        limits = [Limit(f"{user_key}.rpm", e.userRpm, "user", "requests", org),
                  Limit(f"o.{org_key}.rpm", e.orgRpm, "org", "requests", org)]
        if tokens:
            limits += [Limit(f"{user_key}.tpm", e.userTpm, "user", "tokens", org),
                       Limit(f"o.{org_key}.tpm", e.orgTpm, "org", "tokens", org)]
        return [limit for limit in limits if limit.limit > 0]

    def provider_limits(self, provider: str, *, tokens: bool) -> list[Limit]:
        if not self.enabled:
            return []
        key = f"p.{token(provider)}"
        limits = [Limit(f"{key}.rpm", self.defaults.provider_rpm(provider), "provider", "requests", provider)]
        if tokens:
            limits.append(Limit(f"{key}.tpm", self.defaults.provider_tpm(provider), "provider", "tokens", provider))
        return [limit for limit in limits if limit.limit > 0]

    # --- taking and settling --------------------------------------------------------------------

    async def acquire(self, limits: list[Limit], tokens: float = 0.0) -> Permit:
        """Take one request from each request bucket and `tokens` from each token bucket, all or
        nothing; raise the 429 envelope of the first bucket that cannot give them."""
        charges = [(limit, 1.0 if limit.unit == "requests" else tokens) for limit in limits]
        charges = [(limit, cost) for limit, cost in charges if cost > 0]
        if not charges:
            return Permit()
        for limit, cost in charges:
            if cost > limit.limit:
                raise rejected(limit, 60.0, possible=False)
        if self._kv is None:
            return Permit(headers=self._headers(charges))    # not started: unlimited (and no shared state)
        buckets = [self._bucket(limit) for limit, _ in charges]
        for attempt in range(_ROUNDS + 1):
            if all(b.lease >= cost for b, (_, cost) in zip(buckets, charges, strict=True)):
                now = time.monotonic()
                for b, (_, cost) in zip(buckets, charges, strict=True):
                    b.lease -= cost
                    b.used = now
                return Permit([(limit, cost) for limit, cost in charges if limit.unit == "tokens"],
                              self._headers(charges))
            lacking = [(b, limit, cost) for b, (limit, cost) in zip(buckets, charges, strict=True) if b.lease < cost]
            if attempt == _ROUNDS:
                # Checked after the last top-up (which may have succeeded, or let the request through
                # because the shared bucket was unavailable), so `lacking` is really not empty here.
                raise rejected(lacking[0][1], 1.0)
            # one NATS round trip for all of them, not one after the other
            waits = await asyncio.gather(*(self._top_up(limit, b, cost) for b, limit, cost in lacking))
            for (_, limit, _), wait in zip(lacking, waits, strict=True):
                if wait is not None:
                    raise rejected(limit, wait)

    def settle(self, permit: Permit | None, used_tokens: float) -> None:
        """After the call: give back what the token reservation over-estimated, or take the excess
        (a negative lease is a debt the next refill or return pays to the shared bucket)."""
        if permit is None or permit.settled:
            return
        permit.settled = True
        for limit, reserved in permit.charges:
            bucket = self._buckets.get(limit.key)
            if bucket is None or reserved == used_tokens:
                continue
            bucket.lease += reserved - used_tokens
            # Keep at most a lease's worth here: a large refund goes back to (and a debt is paid
            # to) the shared bucket now, not when the lease expires.
            keep = min(max(bucket.lease, 0.0), self._lease_size(limit.limit))
            if bucket.lease != keep and self._kv is not None:
                task = asyncio.get_running_loop().create_task(self._reconcile(limit.key, bucket, keep))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _reconcile(self, key: str, bucket: _Bucket, keep: float) -> None:
        async with bucket.lock:
            amount = bucket.lease - keep
            if amount:
                bucket.lease = keep
                await self._give_back(key, bucket, amount)

    def _bucket(self, limit: Limit) -> _Bucket:
        bucket = self._buckets.get(limit.key)
        if bucket is None:
            bucket = self._buckets[limit.key] = _Bucket(limit.limit)
        else:
            bucket.limit = limit.limit
        return bucket

    async def _top_up(self, limit: Limit, bucket: _Bucket, cost: float) -> float | None:
        async with bucket.lock:          # one refill per bucket at a time in this worker
            if bucket.lease >= cost:
                return None
            return await self._refill(limit, bucket, cost - bucket.lease)

    def _lease_size(self, limit: int) -> float:
        return max(1.0, math.floor(limit * self._lease_fraction))

    async def _refill(self, limit: Limit, bucket: _Bucket, missing: float) -> float | None:
        """Move at least `missing` tokens (a lease's worth when there are) from the shared bucket
        into `bucket.lease`. None on success, else seconds until `missing` will have refilled."""
        want = max(missing, self._lease_size(limit.limit))
        refreshed = False
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock()
            level = bucket.level.now(limit.limit, now) if bucket.level is not None else float(limit.limit)
            if level < missing:
                if not refreshed:
                    refreshed = await self._refresh(limit, bucket)
                    if refreshed:
                        continue
                return wait_for(missing - level, limit.limit)
            take = min(want, level)
            new = Level(level - take, now)
            try:
                written = await self._write(limit.key, new, bucket.revision)
            except KeyWrongLastSequenceError:
                refreshed = await self._refresh(limit, bucket)
                continue
            except Exception as exc:
                self._warn(f"rate limits: shared bucket {limit.key} unavailable ({exc!r}); letting requests through")
                bucket.lease += missing
                bucket.expires = time.monotonic() + self._lease_ttl_s
                return None
            bucket.level, bucket.revision = new, written
            bucket.lease += take
            bucket.expires = time.monotonic() + self._lease_ttl_s
            return None
        self._warn(f"rate limits: {limit.key} is contended; refused a request after {_CAS_ATTEMPTS} conflicts")
        return 1.0

    async def _write(self, key: str, level: Level, revision: int) -> int:
        value = orjson.dumps([round(level.tokens, 3), round(level.at, 3)])
        if revision:
            return await self._kv.update(key, value, last=revision)
        return await self._kv.create(key, value)

    async def _refresh(self, limit: Limit, bucket: _Bucket) -> bool:
        """Read the shared level; False when the bucket could not be read."""
        try:
            entry = await self._kv.get(limit.key)
        except KeyNotFoundError:
            bucket.level, bucket.revision = None, 0
            return True
        except Exception as exc:
            self._warn(f"rate limits: cannot read {limit.key} ({exc!r})")
            return False
        tokens, at = orjson.loads(entry.value)
        bucket.level, bucket.revision = Level(float(tokens), float(at)), entry.revision or 0
        return True

    def _headers(self, charges: list[tuple[Limit, float]]) -> dict[str, str]:
        """X-RateLimit-* of the request bucket closest to its limit, as this worker last saw it."""
        best: tuple[float, Limit, float] | None = None
        now = self._clock()
        for limit, _ in charges:
            if limit.unit != "requests":
                continue
            bucket = self._buckets.get(limit.key)
            remaining = bucket.remaining(now) if bucket is not None else float(limit.limit)
            share = remaining / limit.limit
            if best is None or share < best[0]:
                best = (share, limit, remaining)
        if best is None:
            return {}
        _, limit, remaining = best
        remaining = max(0.0, remaining)
        return {h.RATELIMIT_LIMIT: str(limit.limit), h.RATELIMIT_REMAINING: str(int(remaining)),
                h.RATELIMIT_RESET: str(math.ceil(until_full(remaining, limit.limit)))}

    # --- leases going back ----------------------------------------------------------------------

    async def _sweep(self) -> None:
        interval = min(0.25, self._lease_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._return_leases()
            except Exception:
                log.exception("rate limits: returning leases failed")

    async def _return_leases(self, force: bool = False) -> None:
        now = time.monotonic()
        for key, bucket in list(self._buckets.items()):
            if bucket.lease == 0:
                if now - bucket.used > _IDLE_FORGET_S and not bucket.lock.locked():
                    self._buckets.pop(key, None)
                continue
            if not force and bucket.expires > now:
                continue
            async with bucket.lock:
                amount, bucket.lease = bucket.lease, 0.0     # from here on no request can use them
                if amount:
                    await self._give_back(key, bucket, amount)

    async def _give_back(self, key: str, bucket: _Bucket, amount: float) -> None:
        """Return unused lease tokens (or pay a debt: a negative amount) to the shared bucket."""
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock()
            level = bucket.level.now(bucket.limit, now) if bucket.level is not None else float(bucket.limit)
            new = Level(min(float(bucket.limit), level + amount), now)
            try:
                written = await self._write(key, new, bucket.revision)
            except KeyWrongLastSequenceError:
                if not await self._refresh(Limit(key, bucket.limit, "", "", ""), bucket):
                    return
                continue
            except Exception:
                return
            bucket.level, bucket.revision = new, written
            return

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning(message)
