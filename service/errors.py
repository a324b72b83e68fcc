"""GatewayError: the one exception type the domain raises for an expected failure.

It carries everything the error envelope needs; the worker turns it into a reply. Anything
else that escapes is a bug and becomes a 500 `internal` envelope.
"""

from collections.abc import Mapping

from contracts.envelope import DEFAULT_STATUS, ErrorCategory, ErrorEnvelope, UpstreamInfo, error_envelope


class GatewayError(Exception):
    def __init__(
        self,
        message: str,
        category: ErrorCategory,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        reason: str | None = None,
        provider: str | None = None,
        operation: str | None = None,
        upstream_status: int | None = None,
        upstream_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.status = status or DEFAULT_STATUS[category]
        self.retryable = retryable
        self.reason = reason
        self.provider = provider
        self.operation = operation
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code
        self.headers = dict(headers or {})

    def envelope(self, request_id: str | None, duration_ms: int | None) -> ErrorEnvelope:
        upstream = None
        if self.upstream_status is not None or self.upstream_code is not None:
            upstream = UpstreamInfo(statusCode=self.upstream_status, code=self.upstream_code)
        return error_envelope(
            self.message,
            self.category,
            retryable=self.retryable,
            reason=self.reason,
            provider=self.provider,
            operation=self.operation,
            upstream=upstream,
            request_id=request_id,
            duration_ms=duration_ms,
        )
