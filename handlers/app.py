"""The worker: broker factory, subscribers and lifecycle.

`build_app(settings)` returns the FastStream application that `symbia-integrations worker`
runs. Every request-reply subscriber joins the queue group shared by all workers and runs
up to INTEGRATIONS_WORKER_CONCURRENCY messages at once (FastStream handles one at a time
without `max_workers`).
"""

import logging
import os
import socket

from faststream import ExceptionMiddleware, FastStream
from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.response import NatsResponse
from faststream.specification import AsyncAPI

from contracts import headers as h
from contracts import subjects
from contracts.envelope import ErrorCategory, Reason, envelope_json, error_envelope
from contracts.health import WorkerPing
from handlers.bus import BusEndpoint, Heartbeats, as_message
from handlers.connection import connect_options
from handlers.payloads import PayloadStore
from service import __version__
from service.container import Services
from service.settings import Settings

log = logging.getLogger("symbia.integrations.worker")

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def exception_middleware() -> ExceptionMiddleware:
    """Safety net: whatever escapes a subscriber (a bug, a payload the glue could not read)
    still becomes a reply in the error envelope, so no requester waits out its timeout."""
    middleware = ExceptionMiddleware()

    @middleware.add_handler(Exception, publish=True)
    async def any_error(exc: Exception) -> NatsResponse:
        log.error("unhandled error in a subscriber: %r", exc)
        body = envelope_json(error_envelope("Internal server error", ErrorCategory.internal, reason=Reason.INTERNAL))
        return NatsResponse(body, headers={h.STATUS: "500"})

    return middleware


def build_broker(settings: Settings, name: str) -> NatsBroker:
    return NatsBroker(
        settings.nats_url or "nats://127.0.0.1:4222",
        name=name,
        logger=None,                       # no per-message INFO lines on the hot path
        apply_types=False,                 # handlers take the raw message (decoder below)
        middlewares=[exception_middleware()],
        graceful_timeout=settings.drain_timeout_s,
        **connect_options(settings),
    )


def build_app(settings: Settings) -> FastStream:
    broker = build_broker(settings, f"integrations-worker:{WORKER_ID}")
    services = Services(settings)
    state: dict[str, object] = {}

    def payloads() -> PayloadStore:
        return state["payloads"]  # type: ignore[return-value]

    def heartbeats() -> Heartbeats | None:
        return state.get("heartbeats")  # type: ignore[return-value]

    def endpoint(subject: str, handler, prefix: str, description: str) -> None:
        run = BusEndpoint(handler, prefix, payloads, heartbeats, services.observers)
        broker.subscriber(
            subject, queue=subjects.QUEUE_GROUP, max_workers=settings.worker_concurrency,
            decoder=as_message, title=subject, description=description,
        )(run)

    endpoint(subjects.EXECUTE, services.execute, services.execute.request_id_prefix,
             "Execute an LLM operation; request = ExecuteRequest JSON, reply = the HTTP body with x-status.")

    queries = services.usage_queries
    for subject, handler, description in (
        (subjects.USAGE_SUMMARY, queries.summary, "Usage summary of the caller's org; request = UsageQuery JSON."),
        (subjects.USAGE_LOGS, queries.logs, "Usage rows of the caller's org; request = UsageLogsQuery JSON."),
        (subjects.USAGE_BY_USER, queries.by_user, "Usage per user of the caller's org; request = UsageQuery JSON."),
        (subjects.DB_STATUS, queries.db_status, "Usage store status; request = {}."),
        (subjects.DB_EXPORT, queries.db_export, "Admin: snapshot of the SQLite usage store; request = {}."),
    ):
        endpoint(subject, handler, queries.request_id_prefix, description)

    ping_reply = WorkerPing(worker=WORKER_ID, version=__version__).model_dump_json().encode()

    @broker.subscriber(subjects.HEALTH_PING, queue=subjects.QUEUE_GROUP, decoder=as_message,
                       title=subjects.HEALTH_PING, description="Liveness of the worker pool.")
    async def ping(message: NatsMessage) -> NatsResponse:
        return NatsResponse(ping_reply, headers={h.STATUS: "200"})

    async def starting() -> None:
        await services.start()  # the usage pipeline connects before the first request arrives
        # Usage events travel on the request connection, ahead of their replies (service/usage/publisher.py).
        services.usage.publish_on(await broker.connect())

    async def started() -> None:
        nc = broker.connection
        state["payloads"] = PayloadStore(nc)
        await state["payloads"].bucket()  # exists before any client needs it (docs/CONTRACTS.md)
        beats = Heartbeats(nc, settings.heartbeat_s)
        beats.start()
        state["heartbeats"] = beats
        url = nc.connected_url
        log.info("worker %s ready on nats://%s:%s (concurrency %d)", WORKER_ID, url.hostname if url else "?",
                 url.port if url else "?", settings.worker_concurrency)

    async def stopping() -> None:
        log.info("worker %s draining", WORKER_ID)

    async def stopped() -> None:
        beats = heartbeats()
        if beats:
            await beats.stop()
        await services.close()
        log.info("worker %s stopped", WORKER_ID)

    app = FastStream(
        broker,
        logger=log,
        on_startup=[starting],
        after_startup=[started],
        on_shutdown=[stopping],
        after_shutdown=[stopped],
        specification=AsyncAPI(title="Symbia Integrations bus", version=__version__,
                               description="Request-reply subjects of the integrations gateway (docs/CONTRACTS.md)"),
    )
    app.services = services  # type: ignore[attr-defined]  # for tests and embedding
    return app
