"""A bounded in-process TTL cache with single-flight loading.

Used for Identity introspection results, credential lookups and provider model lists. Each
entry carries its own TTL (positive and negative answers live for different times); the least
recently used entry goes when the cache is full. Concurrent misses for one key share a single
load, so a burst of requests with a new token costs Identity one round trip, not one each.
A failed load is not cached: the next request tries again.
"""

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# What a loader returns: the value and how long it may be served from the cache (<= 0: not cached).
Loaded = tuple[V, float]


def fingerprint(secret: str) -> str:
    """A cache key for a secret (token, API key) that is not the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


class TTLCache(Generic[V]):
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Hashable) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: Hashable, value: V, ttl_s: float) -> None:
        if ttl_s <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[Loaded[V]]]) -> V:
        hit, value = self.lookup(key)
        if hit:
            self.hits += 1
            return value  # type: ignore[return-value]
        pending = self._loading.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value, ttl_s = await load()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            self.put(key, value, ttl_s)
            future.set_result(value)
            return value
        finally:
            self._loading.pop(key, None)
