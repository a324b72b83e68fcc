"""Classify upstream failures from status codes, error types and codes (never message text
alone), so that callers and the circuit breaker see the right category."""

import re
from collections.abc import Mapping

import orjson

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError

_CONTENT_FILTER_CODES = {"content_filter", "content_policy_violation", "content_filtered", "safety"}
_QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "quota_exceeded",
                "billing_error"}
_MODEL_CODES = {"model_not_found", "model_not_available", "not_found_error"}
# Anthropic names its error types; they mean the same as the statuses they come with, and
# decide when a proxy in between rewrote the status.
_AUTH_TYPES = {"authentication_error", "permission_error"}
_OVERLOADED = {"overloaded_error", "overloaded"}
_TOO_LARGE = {"request_too_large"}
_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|hf_[A-Za-z0-9]{6,}|Bearer\s+\S+|[A-Za-z0-9_\-]{40,})")
_MAX_MESSAGE = 500


def redact(text: str) -> str:
    """Remove anything that looks like a key from upstream text before it reaches a caller."""
    return _SECRETISH.sub("[REDACTED]", text)[:_MAX_MESSAGE]


def retry_after_header(headers: Mapping[str, str]) -> dict[str, str]:
    """Retry-After for the caller; `retry-after-ms` too when the upstream sent it (the gateway's
    retries use the precise value; only Retry-After reaches HTTP clients)."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    ms = headers.get("retry-after-ms")
    if value is None and ms is not None:
        try:
            value = str(max(1, round(float(ms) / 1000)))
        except ValueError:
            value = None
    out = {"retry-after": value} if value else {}
    if value and ms:
        out["retry-after-ms"] = ms
    return out


def classify_upstream(
    *,
    provider: str,
    operation: str,
    status: int,
    code: str | None,
    error_type: str | None,
    message: str | None,
    headers: Mapping[str, str],
) -> GatewayError:
    kinds = {k.lower() for k in (code, error_type) if k}
    detail = redact(message) if message else None

    def err(text: str, category: ErrorCategory, **kw) -> GatewayError:
        return GatewayError(
            text, category, provider=provider, operation=operation,
            upstream_status=status, upstream_code=code or error_type, **kw,
        )

    if status in (401, 403) or kinds & _AUTH_TYPES:
        return err(
            f"{provider} rejected the credentials configured for it. Check the provider key.",
            ErrorCategory.auth, status=502, reason=Reason.PROVIDER_REJECTED_CREDENTIALS,
        )
    if status == 402 or kinds & _QUOTA_CODES:
        return err(f"{provider} quota or billing limit reached" + (f": {detail}" if detail else ""),
                   ErrorCategory.quota)
    if status == 429:
        return err(f"{provider} rate limit exceeded. Try again shortly.", ErrorCategory.rate_limit,
                   headers=retry_after_header(headers), reason=Reason.UPSTREAM_ERROR)
    if kinds & _CONTENT_FILTER_CODES:
        return err(f"{provider} blocked the content" + (f": {detail}" if detail else ""),
                   ErrorCategory.content_filter)
    if status in (408, 504):
        return err(f"Request to {provider} timed out", ErrorCategory.timeout, reason=Reason.UPSTREAM_TIMEOUT)
    if status == 529 or kinds & _OVERLOADED:
        # Anthropic's "try again later": a 503 with the provider's Retry-After, so callers back off.
        return err(f"{provider} is overloaded. Try again shortly.", ErrorCategory.provider, status=503,
                   headers=retry_after_header(headers), reason=Reason.UPSTREAM_OVERLOADED)
    if status == 413 or kinds & _TOO_LARGE:
        return err(f"{provider} rejected the request as too large" + (f": {detail}" if detail else ""),
                   ErrorCategory.validation, status=413, reason=Reason.BODY_TOO_LARGE)
    if status >= 500:
        return err(f"{provider} error ({status})" + (f": {detail}" if detail else ""), ErrorCategory.provider,
                   headers=retry_after_header(headers), reason=Reason.UPSTREAM_ERROR)
    reason = Reason.MODEL_NOT_FOUND if (kinds & _MODEL_CODES or status == 404) else Reason.UPSTREAM_ERROR
    return err(f"{provider} rejected the request ({status})" + (f": {detail}" if detail else ""),
               ErrorCategory.validation, reason=reason)


def error_fields(payload: object) -> tuple[str | None, str | None, str | None]:
    """(code, type, message) from the error bodies of OpenAI-compatible servers, HF router,
    TGI and TEI: `{"error": {"message", "type", "code"}}` (also Anthropic's, under a top-level
    `"type": "error"`), `{"error": "text", "error_type"}`, Mistral's flat `{"message", "type",
    "code"}`, `{"message": ...}`, FastAPI-style `{"detail": ...}`, or Gemini's one-element list."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]
    if not isinstance(payload, dict):
        return None, None, payload if isinstance(payload, str) and payload else None
    error = payload.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return (str(code) if code is not None else None), error.get("type"), error.get("message")
    message = error if isinstance(error, str) else payload.get("message") or payload.get("detail")
    if message is not None and not isinstance(message, str):
        message = str(message)
    kind = payload.get("error_type") or payload.get("type")
    code = payload.get("code")
    return (code if isinstance(code, str) else None), (kind if isinstance(kind, str) else None), message


def stream_failure(provider: str, operation: str, payload: object) -> GatewayError:
    """An error the upstream reports inside a stream it already answered 200 for (an `error`
    event): classified from its code and type like any upstream error, without a status."""
    code, kind, message = error_fields(payload)
    kinds = {k.lower() for k in (code, kind) if k}
    detail = redact(message) if message else None
    suffix = f": {detail}" if detail else ""
    if kinds & _CONTENT_FILTER_CODES:
        return GatewayError(f"{provider} blocked the content{suffix}", ErrorCategory.content_filter,
                            provider=provider, operation=operation, upstream_code=code or kind)
    if kinds & {"rate_limit_exceeded", "rate_limit_error", "overloaded_error"}:
        return GatewayError(f"{provider} rate limit exceeded during the stream{suffix}", ErrorCategory.rate_limit,
                            reason=Reason.STREAM_INTERRUPTED, provider=provider, operation=operation,
                            upstream_code=code or kind)
    return GatewayError(f"{provider} failed during the stream{suffix}", ErrorCategory.provider,
                        reason=Reason.STREAM_INTERRUPTED, provider=provider, operation=operation,
                        upstream_code=code or kind)


def malformed_stream(provider: str, operation: str) -> GatewayError:
    return GatewayError(f"{provider} sent a stream event the gateway cannot read", ErrorCategory.provider,
                        reason=Reason.UPSTREAM_INVALID_RESPONSE, provider=provider, operation=operation)


def stream_event_object(provider: str, operation: str, data: str) -> dict:
    """The JSON object of one stream event's data; anything else is a malformed stream."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise malformed_stream(provider, operation) from None
    if not isinstance(payload, dict):
        raise malformed_stream(provider, operation)
    return payload
