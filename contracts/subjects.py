"""NATS subjects and the queue group shared by every worker."""

PREFIX = "integrations.v1"

# Request-reply commands (queue group QUEUE_GROUP).
EXECUTE = f"{PREFIX}.execute"
HEALTH_PING = f"{PREFIX}.health.ping"

QUEUE_GROUP = "integrations"

# JetStream object store used as a claim check for payloads above the server's max_payload.
PAYLOAD_BUCKET = "integrations-payloads"
PAYLOAD_TTL_S = 600.0
PAYLOAD_BUCKET_DESCRIPTION = "claim checks for payloads above max_payload"
