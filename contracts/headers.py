"""Header names of the bus contract (docs/CONTRACTS.md).

A request carries the caller's identity in the same headers as over HTTP; a reply carries
the HTTP status in ``x-status`` (never ``Status``: NATS clients read that as their own status
line, and ``Status: 503`` means "no responders" to nats-py).
"""

# Reply: the HTTP status of the reply body.
STATUS = "x-status"

# Caller identity and tracing, forwarded from HTTP unchanged (lower-case on the bus).
AUTHORIZATION = "authorization"
API_KEY = "x-api-key"
COOKIE = "cookie"
ORG_ID = "x-org-id"
REQUEST_ID = "x-request-id"
# A caller's X-Request-Id is adopted only when it is a sane token; otherwise one is minted.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
TRACE_ID = "x-trace-id"
TRACEPARENT = "traceparent"
CALLER = "x-symbia-caller"
ORIGIN = "x-symbia-origin"
SERVICE_ID = "x-service-id"

IDENTITY_HEADERS = (
    AUTHORIZATION, API_KEY, COOKIE, ORG_ID, REQUEST_ID, TRACE_ID, TRACEPARENT, CALLER, ORIGIN, SERVICE_ID,
)

# Liveness of a long request. A requester that sends ``x-progress: 1`` receives heartbeat
# messages (``x-kind: heartbeat``, empty body) on its reply subject while the worker is busy,
# and the final reply afterwards. Requesters that do not opt in receive only the final reply.
PROGRESS = "x-progress"
KIND = "x-kind"
KIND_HEARTBEAT = "heartbeat"

# Epoch milliseconds by which a worker must start handling the request; later, the requester
# has given up and the worker drops the message instead of calling the upstream for nobody.
START_BY = "x-start-by"

# Claim check: the body is empty and the real payload is the named object in PAYLOAD_BUCKET.
PAYLOAD_REF = "x-payload-ref"

# Reply headers that the HTTP adapter copies onto the HTTP response.
HTTP_REPLY_HEADERS = (
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    REQUEST_ID,
)

# Streams (docs/STREAMING.md). Every message a worker sends for a streaming request carries
# KIND: `start` (stream accepted: x-status 200, ACK_TO, STREAM_WINDOW), `chunk` (SEQ 1, 2, ...),
# `heartbeat`, then one terminal message, `end` or `error` (SEQ and x-status). A request that
# fails before the upstream accepted it gets one `error` message, exactly like a plain reply.
# The requester sends `ack` (SEQ = last chunk consumed) and `cancel` messages to ACK_TO.
KIND_START = "start"
KIND_CHUNK = "chunk"
KIND_END = "end"
KIND_ERROR = "error"
KIND_ACK = "ack"
KIND_CANCEL = "cancel"
SEQ = "x-seq"
ACK_TO = "x-ack-to"
# Requester → worker: how many unacknowledged chunks it accepts in flight (the worker caps it).
STREAM_WINDOW = "x-stream-window"

# Jobs (docs/JOBS.md). A job message carries its idempotency key in NATS_MSG_ID (JetStream
# de-duplication), a grant naming the principal and org it runs as, and a signature of this job
# made with the grant's job key (never a caller credential). Result messages carry x-status,
# x-request-id (the job id), and the job's kind and final status.
NATS_MSG_ID = "Nats-Msg-Id"
JOB_GRANT = "x-job-grant"
JOB_SIGNATURE = "x-job-signature"
REPLY_TO = "x-reply-to"
JOB_KIND = "x-job-kind"
JOB_STATUS = "x-job-status"
# A result too large for one message: the body is empty and the result is this object of
# subjects.RESULTS_OBJECT_BUCKET (kept as long as the result).
RESULT_REF = "x-result-ref"

# Deadlines (docs/RESILIENCE.md). Over HTTP a caller gives its budget as `X-Timeout-Ms`
# (milliseconds from when the gateway received the request); the HTTP adapter turns it into
# DEADLINE, the epoch milliseconds by which the caller must have its answer, and waits no longer
# itself. A bus caller may send either: TIMEOUT_MS counts from when a worker takes the request.
TIMEOUT_MS = "x-timeout-ms"
DEADLINE = "x-deadline"

# Rate-limit headers of limited routes (also copied to HTTP: HTTP_REPLY_HEADERS).
RETRY_AFTER = "retry-after"
RATELIMIT_LIMIT = "x-ratelimit-limit"
RATELIMIT_REMAINING = "x-ratelimit-remaining"
RATELIMIT_RESET = "x-ratelimit-reset"
