"""From a call record and the reply the caller received to the usage event.

The event is built as a plain dict with exactly the fields of `contracts.usage.UsageEvent` and
encoded with orjson: this runs before every reply, and skipping pydantic here saves most of the
cost (the store writer validates every event against the contract)."""

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from contracts import headers as h
from contracts.usage import USAGE_EVENT_SCHEMA
from service.calls import CallRecord
from service.commands import Command, Reply
from service.providers.models import cost_usd_micros

_ERROR_MESSAGE_MAX = 500


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: unique, and time-ordered so that the store's
    primary-key index grows at its end instead of splitting random pages."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | rand & (2**62 - 1)
    return f"{value:032x}"


def trace_id(headers: Mapping[str, str]) -> str | None:
    given = headers.get(h.TRACE_ID)
    if given:
        return given[:128]
    parts = (headers.get(h.TRACEPARENT) or "").split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else None


def _error_fields(reply: Reply) -> tuple[str | None, str | None, str | None]:
    """Category, reason and message of an error envelope (errors are small; never claim-checked)."""
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    message = body.get("error")
    return (body.get("category") or body.get("errorCategory"), body.get("reason"),
            message[:_ERROR_MESSAGE_MAX] if isinstance(message, str) else None)


def usage_event(command: Command, reply: Reply, record: CallRecord) -> dict[str, Any]:
    """The UsageEvent of one call, as a dict (see the module doc)."""
    success = 200 <= reply.status < 400
    category = reason = message = None
    if not success:
        category, reason, message = _error_fields(reply)
    model = record.model_served or record.model_requested
    cost = None
    if record.integration and model:
        cost = cost_usd_micros(record.integration, model, record.prompt_tokens, record.completion_tokens)
    headers = command.headers
    return {
        "schemaVersion": USAGE_EVENT_SCHEMA,
        "id": new_event_id(),
        "timestamp": datetime.now(UTC),
        "requestId": command.request_id,
        "kind": record.kind,
        "orgId": record.org,
        "principalId": record.principal_id,
        "principalType": record.principal_type,
        "integration": record.integration,
        "operation": record.operation,
        "modelRequested": record.model_requested,
        "modelServed": record.model_served,
        "success": success,
        "statusCode": reply.status,
        "errorCategory": category,
        "errorReason": reason,
        "errorMessage": message,
        "durationMs": command.elapsed_ms(),
        "promptTokens": record.prompt_tokens,
        "completionTokens": record.completion_tokens,
        "totalTokens": record.total_tokens,
        "costMicros": cost,
        "credentialSource": record.credential_source,
        "credentialId": record.credential_id,
        "callerService": headers.get(h.CALLER) or headers.get(h.SERVICE_ID),
        "traceId": trace_id(headers),
        "streamed": record.streamed,
        "partial": record.partial,
        "usageEstimated": record.usage_estimated,
        "attempts": record.attempts,
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Wire form of an event dict (timestamps as RFC 3339 with `Z`, like the contract's)."""
    return orjson.dumps(event, option=orjson.OPT_UTC_Z)
