"""Usage events without the bus: the dict built on the reply path is exactly the contract."""

import uuid

import orjson

from contracts.usage import UsageEvent
from service.auth.access import Caller
from service.auth.principal import Principal
from service.calls import CallRecord
from service.commands import Command, Reply
from service.usage.events import encode_event, new_event_id, trace_id, usage_event


def record() -> CallRecord:
    r = CallRecord.start("execute", Caller(Principal(id="u1", type="user", organizations=("acme",)), "acme"))
    r.integration, r.operation, r.model_requested, r.model_served = "openai", "embeddings", "gpt-4o", "gpt-4o-2024"
    r.add_usage({"promptTokens": 1000, "completionTokens": 10})
    return r


def test_the_event_dict_is_the_contract():
    command = Command(b"{}", {"x-service-id": "runtime", "x-trace-id": "t-1"}, "req_1")
    event = usage_event(command, Reply(200, b"{}"), record())
    assert set(event) == set(UsageEvent.model_fields)
    data = encode_event(event)
    parsed = UsageEvent.model_validate_json(data)
    assert orjson.loads(data)["timestamp"].endswith("Z") and parsed.timestamp == event["timestamp"]
    assert parsed.totalTokens == 1010 and parsed.costMicros == 2600  # gpt-4o: $2.50 in, $10 out per 1M
    assert parsed.callerService == "runtime" and parsed.traceId == "t-1" and parsed.success is True


def test_failure_fields_come_from_the_envelope():
    body = orjson.dumps({"success": False, "error": "x" * 900, "category": "rate_limit", "reason": "upstream_error"})
    event = usage_event(Command(b"{}", {}, "req_2"), Reply(429, body), record())
    assert (event["success"], event["errorCategory"], event["errorReason"]) == (False, "rate_limit", "upstream_error")
    assert len(event["errorMessage"]) == 500
    garbage = usage_event(Command(b"{}", {}, "req_3"), Reply(502, b"not json"), record())
    assert garbage["errorCategory"] is None and garbage["success"] is False


def test_event_ids_are_uuid7_and_time_ordered():
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)  # the millisecond prefix never goes back


def test_trace_id_from_traceparent():
    assert trace_id({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}) == (
        "0af7651916cd43dd8448eb211c80319c")
    assert trace_id({"traceparent": "garbage"}) is None and trace_id({}) is None


def test_attempts_travel_in_the_event():
    retried = record()
    retried.attempts = 3                      # the execute pipeline counts retries and fallbacks
    event = usage_event(Command(b"{}", {}, "req_4"), Reply(200, b"{}"), retried)
    assert UsageEvent.model_validate_json(encode_event(event)).attempts == 3
    refused = usage_event(Command(b"{}", {}, "req_5"), Reply(429, b"{}"), record())
    assert refused["attempts"] == 0           # refused before any upstream call
