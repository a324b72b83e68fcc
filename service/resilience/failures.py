"""Which failures say a provider is unhealthy (they count for its circuit) and which are worth
another attempt (retries and fallbacks). Decided from the GatewayError's category and reason,
which service/providers/errors.py and service/transport.py derive from statuses and codes."""

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError

# Statuses of an upstream answer (invoke of OpenAPI services) that say the same; invoke retries
# (when asked) the statuses its contract names.
UNHEALTHY_STATUSES = frozenset({500, 502, 503, 504, 529})
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_HEALTH_CATEGORIES = frozenset({ErrorCategory.provider, ErrorCategory.timeout, ErrorCategory.network})
_RETRY_CATEGORIES = _HEALTH_CATEGORIES | {ErrorCategory.rate_limit}
# Failures of ours, or of the caller, that look like provider failures by category.
_NOT_UPSTREAM = frozenset({
    Reason.CLIENT_DISCONNECTED, Reason.DEADLINE_EXCEEDED, Reason.CIRCUIT_OPEN, Reason.OUTBOUND_DENIED,
    Reason.UPSTREAM_INVALID_RESPONSE,          # a bug or an oversized answer: a retry gets the same
    Reason.RATE_LIMIT_USER_REQUESTS, Reason.RATE_LIMIT_USER_TOKENS, Reason.RATE_LIMIT_ORG_REQUESTS,
    Reason.RATE_LIMIT_ORG_TOKENS, Reason.RATE_LIMIT_PROVIDER_REQUESTS, Reason.RATE_LIMIT_PROVIDER_TOKENS,
})
CLIENT_CLOSED = 499


def health_failure(exc: BaseException | None) -> bool:
    """5xx, timeouts, network errors: yes. Validation, auth, other 4xx (429 included: the provider
    is healthy, we are throttled), abandoned streams (499) and our own refusals: no."""
    if not isinstance(exc, GatewayError):
        return False
    if exc.status == CLIENT_CLOSED or exc.reason in _NOT_UPSTREAM:
        return False
    return exc.category in _HEALTH_CATEGORIES


def retryable_failure(exc: BaseException) -> bool:
    """Worth another attempt, here or at a fallback: upstream 429, 5xx, timeouts, network."""
    if not isinstance(exc, GatewayError):
        return False
    if exc.status == CLIENT_CLOSED or exc.reason in _NOT_UPSTREAM:
        return False
    return exc.category in _RETRY_CATEGORIES
