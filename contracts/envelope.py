"""The one error envelope used by every reply of every route and subject."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ErrorCategory(StrEnum):
    auth = "auth"
    validation = "validation"
    rate_limit = "rate_limit"
    timeout = "timeout"
    provider = "provider"
    network = "network"
    not_found = "not_found"
    content_filter = "content_filter"
    quota = "quota"
    internal = "internal"


# Default HTTP status and retryability per category (reference §2.5). A failure may override
# the status (for example an open circuit is `provider` with 503, a provider that rejects our
# credentials is `auth` with 502 so that 401 keeps meaning "you are not authenticated").
DEFAULT_STATUS: dict[ErrorCategory, int] = {
    ErrorCategory.auth: 401,
    ErrorCategory.validation: 400,
    ErrorCategory.rate_limit: 429,
    ErrorCategory.timeout: 504,
    ErrorCategory.provider: 502,
    ErrorCategory.network: 502,
    ErrorCategory.not_found: 404,
    ErrorCategory.content_filter: 422,
    ErrorCategory.quota: 402,
    ErrorCategory.internal: 500,
}

DEFAULT_RETRYABLE: dict[ErrorCategory, bool] = {
    ErrorCategory.auth: False,
    ErrorCategory.validation: False,
    ErrorCategory.rate_limit: True,
    ErrorCategory.timeout: True,
    ErrorCategory.provider: True,
    ErrorCategory.network: True,
    ErrorCategory.not_found: False,
    ErrorCategory.content_filter: False,
    ErrorCategory.quota: False,
    ErrorCategory.internal: False,
}


class Reason:
    """Machine-readable `reason` codes (docs/CONTRACTS.md lists them)."""

    UNAUTHENTICATED = "unauthenticated"
    ORG_FORBIDDEN = "org_forbidden"
    PROVIDER_CREDENTIAL_MISSING = "provider_credential_missing"
    PROVIDER_REJECTED_CREDENTIALS = "provider_rejected_credentials"
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    UNKNOWN_PROVIDER = "unknown_provider"
    BODY_TOO_LARGE = "body_too_large"
    NO_WORKERS = "no_workers"
    WORKER_LOST = "worker_lost"
    BUS_UNAVAILABLE = "bus_unavailable"
    BUS_TIMEOUT = "bus_timeout"
    QUEUE_TIMEOUT = "queue_timeout"
    WORKER_STOPPING = "worker_stopping"
    PAYLOAD_NOT_FOUND = "payload_not_found"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_INVALID_RESPONSE = "upstream_invalid_response"
    MODEL_NOT_FOUND = "model_not_found"
    UPSTREAM_OVERLOADED = "upstream_overloaded"
    NOT_FOUND = "not_found"
    INTERNAL = "internal_error"
    STREAM_UNSUPPORTED = "stream_unsupported"
    STREAM_INTERRUPTED = "stream_interrupted"
    CLIENT_DISCONNECTED = "client_disconnected"
    # Identity, organizations and credentials (docs/IDENTITY.md)
    IDENTITY_UNAVAILABLE = "identity_unavailable"
    ORG_REQUIRED = "org_required"
    CREDENTIAL_FORBIDDEN = "credential_forbidden"
    ADMIN_REQUIRED = "admin_required"
    # registry and invoke
    OUTBOUND_DENIED = "outbound_denied"
    INTEGRATION_NOT_FOUND = "integration_not_found"
    OPERATION_NOT_FOUND = "operation_not_found"
    INTEGRATION_EXISTS = "integration_exists"
    INTEGRATION_READ_ONLY = "integration_read_only"
    VERSION_CONFLICT = "version_conflict"
    NOT_OWNER = "not_owner"
    STDIO_NOT_ALLOWED = "stdio_not_allowed"
    SPEC_FETCH_FAILED = "spec_fetch_failed"
    SPEC_INVALID = "spec_invalid"
    INTEGRATION_CREDENTIAL_MISSING = "integration_credential_missing"
    INTEGRATION_MISCONFIGURED = "integration_misconfigured"
    UNSUPPORTED_INTEGRATION = "unsupported_integration"
    # MCP server endpoint (docs/MCP.md)
    TOOL_NOT_FOUND = "tool_not_found"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_ARGUMENTS = "invalid_arguments"
    CANCELLED = "cancelled"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    HOST_NOT_ALLOWED = "host_not_allowed"
    # Jobs (docs/JOBS.md)
    JOB_KIND_UNAVAILABLE = "job_kind_unavailable"
    JOB_ID_CONFLICT = "job_id_conflict"
    JOB_NOT_CANCELLABLE = "job_not_cancellable"
    JOB_CANCELLED = "job_cancelled"
    JOB_GRANT_INVALID = "job_grant_invalid"
    JOB_ATTEMPTS_EXHAUSTED = "job_attempts_exhausted"
    JOB_EXPIRED = "job_expired"
    BATCH_TOO_LARGE = "batch_too_large"
    # usage store (docs/USAGE.md)
    STORE_UNAVAILABLE = "store_unavailable"
    # resilience (docs/RESILIENCE.md): an open circuit, the gateway's own rate limits by scope
    # and unit, the caller's deadline
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMIT_USER_REQUESTS = "rate_limit_user_requests"
    RATE_LIMIT_USER_TOKENS = "rate_limit_user_tokens"
    RATE_LIMIT_ORG_REQUESTS = "rate_limit_org_requests"
    RATE_LIMIT_ORG_TOKENS = "rate_limit_org_tokens"
    RATE_LIMIT_PROVIDER_REQUESTS = "rate_limit_provider_requests"
    RATE_LIMIT_PROVIDER_TOKENS = "rate_limit_provider_tokens"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class UpstreamInfo(BaseModel):
    statusCode: int | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """`{"success": false, "error", "category", "errorCategory", "retryable", ...}`.

    `category` and `errorCategory` always carry the same value: the original service used one
    name in some replies and the other in the rest, and its clients read both.
    """

    model_config = ConfigDict(extra="forbid")

    success: bool = False
    error: str
    category: ErrorCategory
    errorCategory: ErrorCategory
    retryable: bool
    reason: str | None = None
    provider: str | None = None
    operation: str | None = None
    upstream: UpstreamInfo | None = None
    requestId: str | None = None
    durationMs: int | None = None


def error_envelope(
    error: str,
    category: ErrorCategory,
    *,
    retryable: bool | None = None,
    reason: str | None = None,
    provider: str | None = None,
    operation: str | None = None,
    upstream: UpstreamInfo | None = None,
    request_id: str | None = None,
    duration_ms: int | None = None,
) -> ErrorEnvelope:
    return ErrorEnvelope(
        error=error,
        category=category,
        errorCategory=category,
        retryable=DEFAULT_RETRYABLE[category] if retryable is None else retryable,
        reason=reason,
        provider=provider,
        operation=operation,
        upstream=upstream,
        requestId=request_id,
        durationMs=duration_ms,
    )


def envelope_json(envelope: ErrorEnvelope) -> bytes:
    """The wire form: absent fields are omitted, as in the original."""
    return envelope.model_dump_json(exclude_none=True).encode()
