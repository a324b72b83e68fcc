"""The worker: broker factory, subscribers and lifecycle.

`build_app(settings)` returns the FastStream application that `symbia-integrations worker`
runs. Every request-reply and stream endpoint joins the queue group shared by all workers and
runs up to INTEGRATIONS_WORKER_CONCURRENCY messages at once. Endpoints are served by the direct
lane (handlers/lane.py: nats-py subscriptions on the broker's connection) unless
INTEGRATIONS_BUS_LANE=faststream, which declares them as FastStream subscribers (FastStream
handles one message at a time without `max_workers`); the AsyncAPI document is generated
from the FastStream declarations of the same table.
"""

import asyncio
import contextlib
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
from contracts.natsurl import split_credentials
from handlers.bus import BusEndpoint, Heartbeats, as_message, run_observed
from handlers.connection import connect_options
from handlers.jobs import InteractiveFirst, JobConsumer
from handlers.lane import DirectLane, Endpoint
from handlers.payloads import PayloadStore
from handlers.streams import StreamEndpoint, StreamFlows
from service import __version__
from service.container import Services
from service.jobs.runner import JobRunner
from service.jobs.store import JobSettings, JobStore
from service.jsreplicas import jetstream_answering, object_stream
from service.openai_compat import openai_error_reply
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
    servers, _ = split_credentials(settings.nats_servers)  # credentials: connect_options
    return NatsBroker(
        servers,
        name=name,
        logger=None,                       # no per-message INFO lines on the hot path
        apply_types=False,                 # handlers take the raw message (decoder below)
        middlewares=[exception_middleware()],
        graceful_timeout=settings.drain_timeout_s,
        **connect_options(settings),
    )


def faststream_reply(endpoint: Endpoint):
    """An endpoint as a FastStream subscriber function (the reply becomes a NatsResponse)."""
    async def subscriber(message: NatsMessage) -> NatsResponse | None:
        out = await endpoint(message)   # NatsMessage has the attributes of InboundMessage
        return None if out is None else NatsResponse(out.body, headers=out.headers)

    return subscriber


def build_app(settings: Settings, lane: str | None = None) -> FastStream:
    """`lane` overrides settings.bus_lane (the AsyncAPI document is built with "faststream")."""
    broker = build_broker(settings, f"integrations-worker:{WORKER_ID}")
    direct = DirectLane(subjects.QUEUE_GROUP, settings.worker_concurrency) \
        if (lane or settings.bus_lane) == "direct" else None
    services = Services(settings)
    state: dict[str, object] = {}

    def payloads() -> PayloadStore:
        return state["payloads"]  # type: ignore[return-value]

    def heartbeats() -> Heartbeats | None:
        return state.get("heartbeats")  # type: ignore[return-value]

    # Request-reply calls (and streams) go first when jobs saturate the worker's CPU (docs/JOBS.md).
    interactive = InteractiveFirst(settings.job_yield_lag_ms / 1000)

    def serve(subject: str, run: Endpoint, description: str, replies: bool) -> None:
        if direct is not None:
            direct.add(subject, run)
            return
        broker.subscriber(
            subject, queue=subjects.QUEUE_GROUP, max_workers=settings.worker_concurrency,
            decoder=as_message, no_reply=not replies, title=subject, description=description,
        )(faststream_reply(run))

    def endpoint(subject: str, handler, prefix: str, description: str, render=None) -> None:
        run = BusEndpoint(handler, prefix, payloads, heartbeats, services.observers, lambda: broker.connection,
                          render, load=interactive)
        serve(subject, run, description, replies=True)

    def endpoints(prefix: str, rows) -> None:
        """One service's request-reply subjects: (subject, handler, description) rows."""
        for subject, handler, description in rows:
            endpoint(subject, handler, prefix, description)

    def flows() -> StreamFlows:
        return state["flows"]  # type: ignore[return-value]

    def stream_endpoint(subject: str, opener, prefix: str, description: str, render=None) -> None:
        """A streaming subject (docs/STREAMING.md): replies are published by the endpoint itself."""
        run = StreamEndpoint(opener, prefix, payloads, heartbeats, flows, services.observers, render,
                             load=interactive)
        serve(subject, run, description, replies=False)

    endpoint(subjects.EXECUTE, services.execute, services.execute.request_id_prefix,
             "Execute an LLM operation; request = ExecuteRequest JSON, reply = the HTTP body with x-status.")

    discovery = services.discovery
    endpoints(discovery.request_id_prefix, (
        (subjects.PROVIDERS_LIST, discovery.providers_list, "Providers the gateway can call (no auth)."),
        (subjects.PROVIDERS_GET, discovery.provider_get, "One provider's configuration; {provider} (no auth)."),
        (subjects.PROVIDERS_MODELS, discovery.provider_models, "Models of one provider; {provider, capability?}."),
        (subjects.MODELS_LIST, discovery.models, "Models of every provider; {capability?, purpose?}."),
        (subjects.CAPABILITIES, discovery.capabilities, "Credential-aware providers and models of the caller."),
        (subjects.STATUS, discovery.status, "Registered providers and circuit-breaker states (no auth)."),
        (subjects.STATS, discovery.stats, "Counts of providers and integrations (no auth)."),
    ))
    # Registry and invoke (docs/REGISTRY.md).
    registry = services.registry_service
    endpoints(registry.request_id_prefix, (
        (subjects.REGISTRY_REGISTER, registry.register, "Register or update an integration (RegisterRequest)."),
        (subjects.REGISTRY_MCP_REGISTER, registry.mcp_register, "Register an MCP server (flat McpRegisterRequest)."),
        (subjects.REGISTRY_LIST, registry.list, "Integrations visible to the caller's org ({type?, scope?})."),
        (subjects.REGISTRY_GET, registry.get, "One integration ({key})."),
        (subjects.REGISTRY_OPERATIONS, registry.operations, "Operations of an integration ({key})."),
        (subjects.REGISTRY_REFRESH, registry.refresh, "Re-discover an integration ({key, body})."),
        (subjects.REGISTRY_DELETE, registry.delete, "Remove an integration ({key})."),
        (subjects.REGISTRY_NAMESPACE, registry.namespace, "Namespace trees of the visible integrations ({})."),
        (subjects.REGISTRY_SEARCH, registry.search, "Search operations ({q?, tag?, integration?, limit?})."),
        (subjects.REGISTRY_PARSE_OPENAPI, registry.parse_openapi, "Preview an OpenAPI parse (ParseOpenApiRequest)."),
        (subjects.REGISTRY_PARSE_MCP, registry.parse_mcp, "Preview an MCP server's operations (ParseMcpRequest)."),
    ))
    endpoint(subjects.INVOKE, services.invoke, services.invoke.request_id_prefix,
             "Invoke an operation of a registered integration (InvokeRequest).")
    # The MCP server endpoint's tools (docs/MCP.md); cancel is fan-out: every worker hears it.
    mcp = services.mcp_endpoint
    endpoints(mcp.request_id_prefix, (
        (subjects.MCP_AUTHENTICATE, mcp.authenticate, "Authenticate an MCP endpoint request ({})."),
        (subjects.MCP_TOOLS_LIST, mcp.tools_list, "One page of the caller's MCP tools ({cursor?})."),
        (subjects.MCP_TOOLS_CALL, mcp.tools_call, "Call one MCP tool ({name, arguments})."),
        (subjects.MCP_INFO, mcp.info, "MCP server info and the caller's tool count ({})."),
    ))

    @broker.subscriber(subjects.MCP_CANCEL, decoder=as_message, title=subjects.MCP_CANCEL,
                       description="Cancel a running MCP tools.call ({requestId}); fan-out, no reply.")
    async def mcp_cancel(message: NatsMessage) -> None:
        await mcp.cancel(message.headers or {}, message.body)

    # Circuit breakers and org policies (docs/RESILIENCE.md).
    resilience = services.resilience_service
    endpoints(resilience.request_id_prefix, (
        (subjects.BREAKER_STATUS, resilience.breaker_status, "Circuit-breaker states ({})."),
        (subjects.BREAKER_RESET, resilience.breaker_reset_all, "Close every circuit (admin; {})."),
        (subjects.BREAKER_RESET_ONE, resilience.breaker_reset, "Close one circuit (admin; {provider})."),
        (subjects.POLICY_GET, resilience.policy_get, "An org's rate-limit overrides and fallback chains ({org})."),
        (subjects.POLICY_PUT, resilience.policy_put, "Replace an org's policy (admin; {org, body: OrgPolicy})."),
        (subjects.POLICY_DELETE, resilience.policy_delete, "Remove an org's policy (admin; {org})."),
    ))

    # Streams and the OpenAI-compatible routes (docs/STREAMING.md).
    stream_endpoint(subjects.EXECUTE_STREAM, services.execute.open_stream, services.execute.request_id_prefix,
                    "Execute as a stream; request = ExecuteRequest JSON; replies = start, chunk (StreamDelta), "
                    "end (the execute reply) or error, with x-kind / x-seq headers (docs/STREAMING.md).")
    openai = services.openai
    endpoint(subjects.OPENAI_CHAT, openai.chat, openai.request_id_prefix,
             "OpenAI-compatible chat completion; request and reply in OpenAI's wire format.",
             render=openai_error_reply)
    stream_endpoint(subjects.OPENAI_CHAT_STREAM, openai.open_chat_stream, openai.request_id_prefix,
                    "OpenAI-compatible chat completion as a stream; chunks are chat.completion.chunk objects.",
                    render=openai_error_reply)
    endpoint(subjects.OPENAI_EMBEDDINGS, openai.embeddings, openai.request_id_prefix,
             "OpenAI-compatible embeddings.", render=openai_error_reply)
    endpoint(subjects.OPENAI_MODELS, openai.models, openai.request_id_prefix,
             "OpenAI-compatible model list (provider/model ids).", render=openai_error_reply)
    endpoint(subjects.OPENAI_MODEL, openai.model, openai.request_id_prefix,
             "OpenAI-compatible model retrieval ({model}).", render=openai_error_reply)
    # Usage and the usage store (docs/USAGE.md).
    queries = services.usage_queries
    endpoints(queries.request_id_prefix, (
        (subjects.USAGE_SUMMARY, queries.summary, "Usage summary of the caller's org; request = UsageQuery JSON."),
        (subjects.USAGE_LOGS, queries.logs, "Usage rows of the caller's org; request = UsageLogsQuery JSON."),
        (subjects.USAGE_BY_USER, queries.by_user, "Usage per user of the caller's org; request = UsageQuery JSON."),
        (subjects.DB_STATUS, queries.db_status, "Usage store status; request = {}."),
        (subjects.DB_EXPORT, queries.db_export, "Admin: snapshot of the SQLite usage store; request = {}."),
    ))

    jobs = services.jobs
    endpoints(jobs.request_id_prefix, (
        (subjects.JOBS_SUBMIT, jobs.submit, "Queue a batch of jobs; request = JobBatch, reply 202 = JobsAccepted."),
        (subjects.JOBS_GET, jobs.get, "A job's status and result; {id} (the caller's organization only)."),
        (subjects.JOBS_CANCEL, jobs.cancel, "Cancel a queued job; {id}."),
        (subjects.JOBS_GRANT, jobs.grant, "A grant and job key to publish jobs straight to integrations.v1.jobs.*."),
    ))

    ping_reply = WorkerPing(worker=WORKER_ID, version=__version__).model_dump_json().encode()

    @broker.subscriber(subjects.HEALTH_PING, queue=subjects.QUEUE_GROUP, decoder=as_message,
                       title=subjects.HEALTH_PING, description="Liveness of the worker pool.")
    async def ping(message: NatsMessage) -> NatsResponse:
        return NatsResponse(ping_reply, headers={h.STATUS: "200"})

    async def prepare() -> None:
        # FastStream runs on_startup hooks, then broker.start() (connect, then start every
        # subscriber: messages flow from that moment), then after_startup hooks. Everything a
        # handler uses must exist before the subscribers start, so connect here (broker.start()
        # reuses the connection) and build the shared state on it.
        nc = await broker.connect()
        await jetstream_answering(nc.jetstream(), object_stream(subjects.PAYLOAD_BUCKET))
        state["payloads"] = PayloadStore(nc, settings.js_replicas)
        await state["payloads"].bucket()  # exists before any client needs it (docs/CONTRACTS.md)
        await services.start(nc)
        beats = Heartbeats(nc, settings.heartbeat_s)
        beats.start()
        state["heartbeats"] = beats
        stream_flows = StreamFlows(nc, settings.stream_ack_timeout_s, settings.stream_window)
        await stream_flows.start()
        state["flows"] = stream_flows
        # Job streams, bucket and signer last: the jobs.* subscribers answer from them as soon as
        # they start. The job slots start in started(), once the subscribers run too.
        store = JobStore(nc, JobSettings(max_age_s=settings.job_max_age_s, results_ttl_s=settings.job_results_ttl_s,
                                         duplicate_window_s=settings.job_duplicate_window_s,
                                         ack_wait_s=settings.job_ack_wait_s, replicas=settings.js_replicas))
        await store.open()
        assert services.job_signer is not None       # services.load() ran before
        services.jobs.open(store, services.job_signer)
        state["job_store"] = store
        if direct is not None:     # everything the endpoints use exists: take requests
            await direct.start(nc)

    async def started() -> None:
        await start_job_slots()
        url = broker.connection.connected_url
        log.info("worker %s ready on nats://%s:%s (concurrency %d, jobs %d)", WORKER_ID,
                 url.hostname if url else "?", url.port if url else "?", settings.worker_concurrency,
                 settings.job_concurrency)

    async def start_job_slots() -> None:
        """This worker's job slots: jobs run the very pipeline of request-reply calls (run_observed)
        on state prepare() built (registry, payloads, job store), so they start after it."""
        if settings.job_concurrency == 0:
            return
        store: JobStore = state["job_store"]  # type: ignore[assignment]
        assert services.job_signer is not None
        runner = JobRunner(store=store, signer=services.job_signer, handlers=services.job_handlers,
                           execute=lambda handler, command: run_observed(handler, command, services.observers),
                           max_attempts=settings.job_max_attempts, worker_id=WORKER_ID,
                           settings=settings)
        consumer = JobConsumer(store.js, runner, concurrency=settings.job_concurrency,
                               ack_wait_s=settings.job_ack_wait_s, priority=interactive)
        interactive.start()
        await consumer.start()
        state["jobs"] = consumer

    async def stopping() -> None:
        # FastStream's stop() keeps a subscription open while it waits for in-flight handlers and
        # drops whatever arrives meanwhile. Withdraw interest first (new requests go to other
        # workers, or get "no responders" at once), hand already-delivered messages to the
        # handlers, then let stop() wait for them.
        log.info("worker %s draining", WORKER_ID)
        for subscriber in broker.subscribers:
            subscription = getattr(subscriber, "subscription", None)
            if subscription is None:
                continue
            with contextlib.suppress(Exception):
                await subscription.drain()
            subscriber.subscription = None
        draining = [direct.drain(settings.drain_timeout_s)] if direct is not None else []
        consumer = state.get("jobs")
        if isinstance(consumer, JobConsumer):   # running jobs finish (or are handed back) while requests drain
            draining.append(consumer.stop(settings.drain_timeout_s))
        await asyncio.gather(*draining)
        if isinstance(consumer, JobConsumer):
            await interactive.stop()

    async def stopped() -> None:
        beats = heartbeats()
        if beats:
            await beats.stop()
        stream_flows = state.get("flows")
        if stream_flows:
            await stream_flows.stop()  # type: ignore[attr-defined]
        await services.close()
        log.info("worker %s stopped", WORKER_ID)

    app = FastStream(
        broker,
        logger=log,
        # First Catalog load, then the connection and shared state, before any subscriber takes a message.
        on_startup=[services.load, prepare],
        after_startup=[started],
        on_shutdown=[stopping],
        after_shutdown=[stopped],
        specification=AsyncAPI(title="Symbia Integrations bus", version=__version__,
                               description="Request-reply subjects of the integrations gateway (docs/CONTRACTS.md)"),
    )
    app.services = services  # type: ignore[attr-defined]  # for tests and embedding
    return app
