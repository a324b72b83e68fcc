"""`python -m handlers.asyncapi`: print the AsyncAPI 3 document of the bus (`make asyncapi`
writes docs/asyncapi.json). Channels, queue groups and operations come from the registered
subscribers; subscribers take raw messages (no DI on the hot path), so the payload and reply
schemas are filled in from the route table in contracts, the same source as the OpenAPI
document."""

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from contracts.envelope import ErrorEnvelope
from contracts.mcp import BUS_ONLY
from contracts.routes import ROUTES
from contracts.streaming import StreamDelta
from contracts.usage import UsageEvent, usage_subject
from handlers.app import build_app
from service.settings import Settings


def document() -> dict[str, Any]:
    # The FastStream lane declares every endpoint as a subscriber, which is what the document lists.
    doc = json.loads(build_app(Settings(_env_file=None), lane="faststream").schema.to_specification().to_json())
    # (subject, request model, reply model): the HTTP routes, then subjects without a route.
    entries = [(route.subject, route.request_model, route.response_model) for route in ROUTES]
    entries += [(subject, request, reply) for subject, request, reply, _ in BUS_ONLY]
    models = [(ErrorEnvelope, "serialization"), (StreamDelta, "serialization"), (UsageEvent, "serialization")]
    for _, request_model, response_model in entries:
        models += [(m, mode) for m, mode in ((request_model, "validation"), (response_model, "serialization")) if m]
    _, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"].update(schemas.get("$defs", {}))
    for subject, request_model, response_model in entries:
        message = doc["components"]["messages"].get(f"{subject}:SubscribeMessage")
        if message is None:
            continue
        if request_model:
            message["payload"] = {"$ref": f"#/components/schemas/{request_model.__name__}"}
        if response_model is None and subject not in {route.subject for route in ROUTES}:
            continue  # fan-out subjects: no reply
        reply_name = f"{subject}:Reply"
        doc["components"]["messages"][reply_name] = {
            "title": reply_name,
            "headers": {"type": "object", "properties": {"x-status": {"type": "string",
                                                                      "description": "HTTP status of the body"}}},
            "payload": {"oneOf": [{"$ref": f"#/components/schemas/{response_model.__name__}"},
                                  {"$ref": "#/components/schemas/ErrorEnvelope"}]} if response_model else {},
        }
        doc["operations"][subject]["reply"] = {
            "messages": [{"$ref": f"#/components/messages/{reply_name}"}],
            "address": {"location": "$message.header#/reply_to",
                        "description": "the requester's inbox (NATS request-reply)"},
        }
    for route in ROUTES:
        if route.stream is not None:
            _stream_operation(doc, route)
    _add_usage_events(doc)
    return doc


_STREAM_HEADERS = {"type": "object", "properties": {
    "x-kind": {"type": "string", "enum": ["start", "chunk", "heartbeat", "end", "error"]},
    "x-seq": {"type": "string", "description": "1, 2, ... on chunk, end and error messages"},
    "x-status": {"type": "string", "description": "HTTP status (start, end, error)"},
    "x-ack-to": {"type": "string", "description": "start: where to send ack / cancel messages"},
    "x-stream-window": {"type": "string", "description": "start: chunks allowed unacknowledged"},
}}


def _stream_operation(doc: dict[str, Any], route) -> None:
    """Stream subjects reply with several messages (docs/STREAMING.md)."""
    subject = route.stream.subject
    message = doc["components"]["messages"].get(f"{subject}:SubscribeMessage")
    if message is None or subject not in doc["operations"]:
        return
    if route.request_model:
        message["payload"] = {"$ref": f"#/components/schemas/{route.request_model.__name__}"}
    chunk = ({"$ref": "#/components/schemas/StreamDelta"} if route.stream.dialect.name == "execute"
             else {"type": "object", "description": "an OpenAI chat.completion.chunk"})
    end = ({"$ref": f"#/components/schemas/{route.response_model.__name__}"} if route.stream.dialect.name == "execute"
           else {"type": "string", "maxLength": 0, "description": "empty"})
    name = f"{subject}:StreamMessage"
    doc["components"]["messages"][name] = {
        "title": name,
        "headers": _STREAM_HEADERS,
        "payload": {"oneOf": [chunk, end, {"$ref": "#/components/schemas/ErrorEnvelope"}]},
    }
    doc["operations"][subject]["reply"] = {
        "messages": [{"$ref": f"#/components/messages/{name}"}],
        "address": {"location": "$message.header#/reply_to",
                    "description": "the requester's inbox: start, chunk × n, then end or error"},
    }


def _add_usage_events(doc: dict[str, Any]) -> None:
    """The usage events the workers publish (a JetStream stream, not a subscriber)."""
    name = "integrations.v1.events.usage"
    doc["components"]["messages"]["UsageEvent"] = {
        "title": "UsageEvent",
        "headers": {"type": "object", "properties": {"Nats-Msg-Id": {
            "type": "string", "description": "the event id (JetStream de-duplication)"}}},
        "payload": {"$ref": "#/components/schemas/UsageEvent"},
    }
    doc["channels"][name] = {
        "address": usage_subject("{orgId}"),
        "description": "One event per execute, invoke or MCP call that got past authentication; stored in the "
                       "JetStream stream INTEGRATIONS_USAGE (docs/USAGE.md).",
        "parameters": {"orgId": {"description": "the organization the call was made in"}},
        "messages": {"UsageEvent": {"$ref": "#/components/messages/UsageEvent"}},
    }
    doc["operations"][name] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/UsageEvent"}],
    }


def text() -> str:
    """The file's content: keys sorted, so docs/asyncapi.json only changes when the bus does (the
    channel order varies per run)."""
    return json.dumps(document(), indent=2, sort_keys=True)


if __name__ == "__main__":
    print(text())
