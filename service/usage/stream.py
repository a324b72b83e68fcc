"""The JetStream stream that holds usage events and the durable consumer of the store writer.

Every worker declares the stream at start-up (create, or update the settings it manages when
they changed), so the stream exists before the first event and comes back if an operator
deleted it. Limits retention: events stay for INTEGRATIONS_USAGE_STREAM_MAX_AGE_S or until
INTEGRATIONS_USAGE_STREAM_MAX_BYTES, whichever comes first, whether or not a consumer read
them, so external consumers can replay and a store outage shorter than the limits loses
nothing.
"""

import dataclasses
import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError

from contracts import subjects
from service.jsreplicas import cannot_place

log = logging.getLogger("symbia.integrations.usage")

ALL_USAGE_EVENTS = f"{subjects.USAGE_EVENTS}.>"
def stream_config(settings) -> StreamConfig:
    return StreamConfig(
        name=settings.usage_stream,
        description="Symbia Integrations usage events, one per call (docs/USAGE.md)",
        subjects=[ALL_USAGE_EVENTS],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=settings.usage_stream_max_age_s,
        max_bytes=settings.usage_stream_max_bytes,
        num_replicas=settings.usage_replicas,
        # JetStream rejects a duplicate window longer than max_age.
        duplicate_window=min(settings.usage_duplicate_window_s, settings.usage_stream_max_age_s),
    )


def consumer_config(settings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.usage_consumer,
        description="usage store writer (Symbia Integrations workers)",
        filter_subject=ALL_USAGE_EVENTS,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,     # ack each event after its batch is committed
        ack_wait=settings.usage_ack_wait_s,
        max_deliver=-1,                    # never give up on an event: the store comes back
        max_ack_pending=max(1000, settings.usage_batch_size * 4),
    )


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    def close(a: float | None, b: float | None) -> bool:
        return abs((a or 0) - (b or 0)) < 0.001

    return (sorted(current.subjects or []) != sorted(wanted.subjects or [])
            or not close(current.max_age, wanted.max_age)
            or current.max_bytes != wanted.max_bytes
            or current.num_replicas != wanted.num_replicas
            or not close(current.duplicate_window, wanted.duplicate_window))


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    try:
        current = (await js.stream_info(wanted.name)).config
    except NotFoundError:
        try:
            await js.add_stream(wanted)
            log.info("created the usage stream %s", wanted.name)
            return
        except APIError as exc:
            if cannot_place(exc) and (wanted.num_replicas or 1) > 1:
                # a single server, or too few peers up: one replica now, scaled up at a later start
                log.warning("usage stream %s: cannot create %d replicas (%s); created with 1",
                            wanted.name, wanted.num_replicas, exc.description)
                await js.add_stream(dataclasses.replace(wanted, num_replicas=1))
                return
            if not isinstance(exc, BadRequestError):
                raise
            current = (await js.stream_info(wanted.name)).config  # another worker created it a moment ago
    if _differs(current, wanted):
        try:
            await js.update_stream(wanted)
            log.info("updated the usage stream %s to the configured limits", wanted.name)
        except Exception as exc:  # e.g. replicas on a single server: keep running with the old limits
            log.warning("could not update the usage stream %s: %s", wanted.name, exc)
            if current.num_replicas != wanted.num_replicas:  # the other limits still apply
                try:
                    await js.update_stream(dataclasses.replace(wanted, num_replicas=current.num_replicas))
                except Exception as again:
                    log.warning("could not update the usage stream %s: %s", wanted.name, again)
