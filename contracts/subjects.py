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

# Usage pipeline (docs/USAGE.md): query subjects behind the HTTP routes, and the usage events
# published to the JetStream stream USAGE_STREAM on `USAGE_EVENTS.<orgId>`.
USAGE_SUMMARY = f"{PREFIX}.usage.summary"
USAGE_LOGS = f"{PREFIX}.usage.logs"
USAGE_BY_USER = f"{PREFIX}.usage.by-user"
DB_STATUS = f"{PREFIX}.db.status"
DB_EXPORT = f"{PREFIX}.db.export"
USAGE_EVENTS = f"{PREFIX}.events.usage"
USAGE_STREAM = "INTEGRATIONS_USAGE"
