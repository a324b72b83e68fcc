"""Replication of the JetStream assets the workers create (INTEGRATIONS_JS_REPLICAS).

Every stream, KV bucket and object store is created with the configured number of replicas.
An asset that already exists with another count is updated at start-up (a cluster can scale a
stream up or down in place); when the server refuses (a single server, too few peers) the
refusal is logged and the asset keeps working with the replicas it has. Creation falls back to
one replica with a warning when the server cannot place more (a single server, or a cluster with
too few nodes up): the next worker start scales it up once the peers are there.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

log = logging.getLogger("symbia.integrations.jetstream")

T = TypeVar("T")

# JetStream error codes meaning "cannot place that many replicas here".
_NO_PLACEMENT = frozenset({
    10074,  # replicas > 1 not supported in non-clustered mode
    10023,  # insufficient resources
    10005,  # no suitable peers for placement
})


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def object_stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def cannot_place(exc: BaseException) -> bool:
    return isinstance(exc, APIError) and exc.err_code in _NO_PLACEMENT


async def create_replicated(create: Callable[[int], Awaitable[T]], replicas: int, what: str) -> T:
    """`create(replicas)`; with one replica instead when the server cannot place more."""
    try:
        return await create(replicas)
    except APIError as exc:
        if replicas <= 1 or not cannot_place(exc):
            raise
        log.warning("%s: cannot create %d replicas (%s); created with 1, scaled up at a later start",
                    what, replicas, exc.description)
        return await create(1)


async def apply_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Bring an existing stream (a KV bucket's or object store's too) to `replicas`; log a refusal."""
    try:
        config = (await js.stream_info(stream)).config
    except NotFoundError:
        return                          # not created yet: it will be created with `replicas`
    except Exception as exc:
        log.warning("cannot read the replicas of %s: %s", stream, exc)
        return
    current = config.num_replicas or 1
    if current == replicas:
        return
    config.num_replicas = replicas
    try:
        await js.update_stream(config)
        log.info("%s: replicas %d → %d", stream, current, replicas)
    except Exception as exc:
        log.warning("%s keeps %d replicas: the server refused %d (%s)", stream, current, replicas,
                    getattr(exc, "description", None) or exc)


async def jetstream_answering(js: JetStreamContext, stream: str, timeout_s: float = 60.0) -> None:
    """Wait until JetStream answers an API request (here: about `stream`, which the caller may
    read; "not found" is an answer). A cluster that is still electing its leaders, or a loaded
    one, times requests out for a while after the servers accept connections; a worker that
    started then would otherwise die on its first asset."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await js.stream_info(stream)
            return
        except NotFoundError:
            return
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError) as exc:
            if loop.time() >= deadline:
                raise
            log.warning("JetStream is not answering yet (%s); retrying", type(exc).__name__)
            await asyncio.sleep(1.0)
