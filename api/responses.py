"""Responses the adapter produces itself (everything else is the worker's bytes)."""

import uuid

from starlette.responses import Response

from contracts.envelope import ErrorCategory, envelope_json, error_envelope

JSON = "application/json"


def new_request_id() -> str:
    return f"req_{str(uuid.uuid4())[:12]}"


def envelope_response(status: int, message: str, category: ErrorCategory, *, reason: str | None = None,
                      retryable: bool | None = None, request_id: str | None = None,
                      headers: dict[str, str] | None = None) -> Response:
    body = envelope_json(error_envelope(message, category, reason=reason, retryable=retryable,
                                        request_id=request_id or new_request_id()))
    return Response(body, status_code=status, media_type=JSON, headers=headers)
