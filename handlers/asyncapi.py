"""`python -m handlers.asyncapi`: print the AsyncAPI 3 document of the bus (`make asyncapi`
writes docs/asyncapi.json). Channels, queue groups and operations come from the registered
subscribers; subscribers take raw messages (no DI on the hot path), so the payload and reply
schemas are filled in from the route table in contracts, the same source as the OpenAPI
document."""

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from contracts.envelope import ErrorEnvelope
from contracts.routes import ROUTES
from contracts.usage import UsageEvent, usage_subject
from handlers.app import build_app
from service.settings import Settings


def document() -> dict[str, Any]:
    doc = json.loads(build_app(Settings(_env_file=None)).schema.to_specification().to_json())
    models = [(ErrorEnvelope, "serialization"), (UsageEvent, "serialization")]
    for route in ROUTES:
        models += [(m, mode) for m, mode in ((route.request_model, "validation"),
                                             (route.response_model, "serialization")) if m]
    _, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"].update(schemas.get("$defs", {}))
    for route in ROUTES:
        message = doc["components"]["messages"].get(f"{route.subject}:SubscribeMessage")
        if message is None:
            continue
        if route.request_model:
            message["payload"] = {"$ref": f"#/components/schemas/{route.request_model.__name__}"}
        reply_name = f"{route.subject}:Reply"
        doc["components"]["messages"][reply_name] = {
            "title": reply_name,
            "headers": {"type": "object", "properties": {"x-status": {"type": "string",
                                                                      "description": "HTTP status of the body"}}},
            "payload": {"oneOf": [{"$ref": f"#/components/schemas/{route.response_model.__name__}"},
                                  {"$ref": "#/components/schemas/ErrorEnvelope"}]} if route.response_model else {},
        }
        doc["operations"][route.subject]["reply"] = {
            "messages": [{"$ref": f"#/components/messages/{reply_name}"}],
            "address": {"location": "$message.header#/reply_to",
                        "description": "the requester's inbox (NATS request-reply)"},
        }
    _add_usage_events(doc)
    return doc


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


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
