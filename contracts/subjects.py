"""NATS subjects and the queue group shared by every worker."""

PREFIX = "integrations.v1"

# Request-reply commands (queue group QUEUE_GROUP).
EXECUTE = f"{PREFIX}.execute"
HEALTH_PING = f"{PREFIX}.health.ping"

# Discovery (contracts/discovery.py): providers, models, capabilities, status, stats.
PROVIDERS_LIST = f"{PREFIX}.providers.list"
PROVIDERS_GET = f"{PREFIX}.providers.get"
PROVIDERS_MODELS = f"{PREFIX}.providers.models"
MODELS_LIST = f"{PREFIX}.models.list"
CAPABILITIES = f"{PREFIX}.capabilities"
STATUS = f"{PREFIX}.status"
STATS = f"{PREFIX}.stats"

QUEUE_GROUP = "integrations"

# JetStream object store used as a claim check for payloads above the server's max_payload.
PAYLOAD_BUCKET = "integrations-payloads"
PAYLOAD_TTL_S = 600.0
PAYLOAD_BUCKET_DESCRIPTION = "claim checks for payloads above max_payload"

# Streaming request-reply (docs/STREAMING.md): several messages per request on the
# requester's reply subject (start, chunks with sequence numbers, a terminal end or error).
EXECUTE_STREAM = f"{PREFIX}.execute.stream"

# OpenAI-compatible wire format (the /v1 routes): same pipeline as execute, OpenAI bodies.
OPENAI_CHAT = f"{PREFIX}.openai.chat.completions"
OPENAI_CHAT_STREAM = f"{PREFIX}.openai.chat.completions.stream"
OPENAI_EMBEDDINGS = f"{PREFIX}.openai.embeddings"
OPENAI_MODELS = f"{PREFIX}.openai.models"
OPENAI_MODEL = f"{PREFIX}.openai.model"
# Registry and invoke (docs/REGISTRY.md).
INVOKE = f"{PREFIX}.invoke"
REGISTRY_REGISTER = f"{PREFIX}.registry.register"
REGISTRY_MCP_REGISTER = f"{PREFIX}.registry.mcp.register"
REGISTRY_LIST = f"{PREFIX}.registry.list"
REGISTRY_GET = f"{PREFIX}.registry.get"
REGISTRY_OPERATIONS = f"{PREFIX}.registry.operations"
REGISTRY_REFRESH = f"{PREFIX}.registry.refresh"
REGISTRY_DELETE = f"{PREFIX}.registry.delete"
REGISTRY_NAMESPACE = f"{PREFIX}.registry.namespace"
REGISTRY_SEARCH = f"{PREFIX}.registry.search"
REGISTRY_PARSE_OPENAPI = f"{PREFIX}.registry.parse.openapi"
REGISTRY_PARSE_MCP = f"{PREFIX}.registry.parse.mcp"

# Registry changes: `<EVENTS_REGISTRY>.<org>.<key>`; global entries use the org token `_global`.
EVENTS_REGISTRY = f"{PREFIX}.events.registry"
REGISTRY_GLOBAL_ORG = "_global"

# JetStream KV bucket of registry entries (small records) and the object store holding each
# entry's operations and inline spec (any size: objects are chunked).
REGISTRY_BUCKET = "integrations-registry"
REGISTRY_DOCS_BUCKET = "integrations-registry-docs"

# MCP server endpoint (docs/MCP.md): the api process speaks the protocol; every tool list, tool
# call and info read is one request to the workers. MCP_CANCEL is fan-out (no queue group, no
# reply): every worker receives it and the one running the call cancels it.
MCP_AUTHENTICATE = f"{PREFIX}.mcp.authenticate"
MCP_TOOLS_LIST = f"{PREFIX}.mcp.tools.list"
MCP_TOOLS_CALL = f"{PREFIX}.mcp.tools.call"
MCP_INFO = f"{PREFIX}.mcp.info"
MCP_CANCEL = f"{PREFIX}.mcp.cancel"


# Jobs (contracts/jobs.py, docs/JOBS.md): commands queued durably and run without a waiting caller.
# Publishing (not requesting) to a kind's subject queues a job in the work-queue stream JOBS_STREAM.
JOBS_PREFIX = f"{PREFIX}.jobs"
JOB_KINDS = ("execute", "invoke", "register")
JOB_SUBJECTS = tuple(f"{JOBS_PREFIX}.{kind}" for kind in JOB_KINDS)
# Request-reply (queue group QUEUE_GROUP; not captured by the stream).
JOBS_SUBMIT = f"{JOBS_PREFIX}.submit"
JOBS_GET = f"{JOBS_PREFIX}.get"
JOBS_CANCEL = f"{JOBS_PREFIX}.cancel"
JOBS_GRANT = f"{JOBS_PREFIX}.grant"
# Every job's outcome, kept in RESULTS_STREAM (the last one per job id).
RESULTS_PREFIX = f"{PREFIX}.results"
JOBS_STREAM = "INTEGRATIONS_JOBS"
JOBS_CONSUMER = "integrations-jobs"
RESULTS_STREAM = "INTEGRATIONS_RESULTS"
JOBS_BUCKET = "integrations-jobs"                 # KV: job id → status record
RESULTS_OBJECT_BUCKET = "integrations-job-results"  # results above max_payload


def job_subject(kind: str) -> str:
    return f"{JOBS_PREFIX}.{kind}"


def result_subject(job_id: str) -> str:
    return f"{RESULTS_PREFIX}.{job_id}"

# Usage pipeline (docs/USAGE.md): query subjects behind the HTTP routes, and the usage events
# published to the JetStream stream USAGE_STREAM on `USAGE_EVENTS.<orgId>`.
USAGE_SUMMARY = f"{PREFIX}.usage.summary"
USAGE_LOGS = f"{PREFIX}.usage.logs"
USAGE_BY_USER = f"{PREFIX}.usage.by-user"
DB_STATUS = f"{PREFIX}.db.status"
DB_EXPORT = f"{PREFIX}.db.export"
USAGE_EVENTS = f"{PREFIX}.events.usage"
USAGE_STREAM = "INTEGRATIONS_USAGE"

# Resilience (docs/RESILIENCE.md): circuit breakers, rate limits, org policies.
BREAKER_STATUS = f"{PREFIX}.breaker.status"
BREAKER_RESET = f"{PREFIX}.breaker.reset"
BREAKER_RESET_ONE = f"{PREFIX}.breaker.reset.one"
POLICY_GET = f"{PREFIX}.policy.get"
POLICY_PUT = f"{PREFIX}.policy.put"
POLICY_DELETE = f"{PREFIX}.policy.delete"
# Breaker transitions: `<EVENTS_BREAKER>.<breaker name>` (BreakerEvent).
EVENTS_BREAKER = f"{PREFIX}.events.breaker"
# KV buckets: breaker states (one key per circuit), rate-limit token buckets, org policies.
BREAKER_BUCKET = "integrations-breakers"
RATE_LIMIT_BUCKET = "integrations-ratelimits"
POLICY_BUCKET = "integrations-org-policies"
