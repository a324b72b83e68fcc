"""Responses the adapter produces itself (everything else is the worker's bytes)."""

import re
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import Response

from contracts import headers as h
from contracts.envelope import ErrorCategory, envelope_json, error_envelope
from contracts.openai import openai_error

JSON = "application/json"
_REQUEST_ID = re.compile(h.REQUEST_ID_PATTERN)


def new_request_id() -> str:
    return f"req_{str(uuid.uuid4())[:12]}"


def request_id_of(request: Request) -> str:
    """The caller's X-Request-Id when sane (as the worker does), else a new one."""
    given = request.headers.get(h.REQUEST_ID)
    return given if given and _REQUEST_ID.match(given) else new_request_id()


def envelope_response(status: int, message: str, category: ErrorCategory, *, reason: str | None = None,
                      retryable: bool | None = None, request_id: str | None = None,
                      headers: dict[str, str] | None = None) -> Response:
    body = envelope_json(error_envelope(message, category, reason=reason, retryable=retryable,
                                        request_id=request_id or new_request_id()))
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def error_body(status: int, message: str, category: ErrorCategory, *, reason: str | None = None,
               retryable: bool | None = None, request_id: str | None = None,
               error_format: str = "envelope") -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of an error the adapter produces itself, in the route's format."""
    envelope = error_envelope(message, category, reason=reason, retryable=retryable,
                              request_id=request_id or new_request_id())
    if error_format == "openai":
        status, body, headers = openai_error(envelope.model_dump(mode="json", exclude_none=True), status)
        return status, orjson.dumps(body), headers
    return status, envelope_json(envelope), {}


def error_response(status: int, message: str, category: ErrorCategory, *, reason: str | None = None,
                   retryable: bool | None = None, request_id: str | None = None, error_format: str = "envelope",
                   headers: dict[str, str] | None = None) -> Response:
    status, body, extra = error_body(status, message, category, reason=reason, retryable=retryable,
                                     request_id=request_id, error_format=error_format)
    return Response(body, status_code=status, media_type=JSON, headers={**extra, **(headers or {})})
