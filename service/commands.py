"""What every command handler shares: a request id, timing, and turning failures into the
one error envelope. The worker's bus glue calls `run_command`; handlers only raise."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason, envelope_json, error_envelope
from service.calls import CallRecord
from service.errors import GatewayError

log = logging.getLogger("symbia.integrations")

_CLIENT_REQUEST_ID = re.compile(h.REQUEST_ID_PATTERN)


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Command:
    """One incoming request: its bytes and headers, and when and as what it arrived."""

    body: bytes
    headers: Mapping[str, str]
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    record: CallRecord | None = None            # set once the caller is authenticated

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def json_reply(self, status: int, payload: object, extra_headers: Mapping[str, str] | None = None) -> Reply:
        return Reply(status, orjson.dumps(payload), {h.REQUEST_ID: self.request_id, **(extra_headers or {})})


def new_request_id(headers: Mapping[str, str], prefix: str) -> str:
    """The caller's X-Request-Id when it is a sane token, else `<prefix>_<12 chars>` as the original."""
    given = headers.get(h.REQUEST_ID)
    if given and _CLIENT_REQUEST_ID.match(given):
        return given
    return f"{prefix}_{str(uuid.uuid4())[:12]}"


def validation_error(exc: ValidationError) -> GatewayError:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return GatewayError(f"Malformed JSON body: {errors[0]['msg']}", ErrorCategory.validation,
                            reason=Reason.INVALID_JSON)
    parts = []
    for err in errors[:8]:
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{path}: {err['msg']}" if path else err["msg"])
    more = f" (+{len(errors) - 8} more)" if len(errors) > 8 else ""
    return GatewayError(f"Invalid request: {', '.join(parts)}{more}", ErrorCategory.validation,
                        reason=Reason.INVALID_REQUEST)


def error_reply(exc: GatewayError, command: Command) -> Reply:
    body = envelope_json(exc.envelope(command.request_id, command.elapsed_ms()))
    return Reply(exc.status, body, {h.REQUEST_ID: command.request_id, **exc.headers})


def internal_error_reply(command: Command) -> Reply:
    envelope = error_envelope("Internal server error", ErrorCategory.internal, reason=Reason.INTERNAL,
                              request_id=command.request_id, duration_ms=command.elapsed_ms())
    return Reply(500, envelope_json(envelope), {h.REQUEST_ID: command.request_id})


Handler = Callable[[Command], Awaitable[Reply]]


async def run_command(handler: Handler, command: Command) -> Reply:
    try:
        return await handler(command)
    except Exception as exc:
        return failure_reply(exc, command, handler)


def failure_reply(exc: Exception, command: Command, where: object = None) -> Reply:
    """The envelope reply for whatever a handler raised (a bug becomes a logged 500)."""
    if isinstance(exc, GatewayError):
        return error_reply(exc, command)
    if isinstance(exc, ValidationError):
        return error_reply(validation_error(exc), command)
    log.error("unhandled error in %s (request %s)", getattr(where, "__qualname__", where) or "a handler",
              command.request_id, exc_info=exc)
    return internal_error_reply(command)
