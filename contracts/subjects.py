"""NATS subjects and the queue group shared by every worker."""

PREFIX = "integrations.v1"

# Request-reply commands (queue group QUEUE_GROUP).
EXECUTE = f"{PREFIX}.execute"
HEALTH_PING = f"{PREFIX}.health.ping"

# Discovery (contracts/discovery.py): providers, models, capabilities, status, stats.
PROVIDERS_LIST = f"{PREFIX}.providers.list"
PROVIDERS_GET = f"{PREFIX}.providers.get"
PROVIDERS_MODELS = f"{PREFIX}.providers.models"
MODELS_LIST = f"{PREFIX}.models.list"
CAPABILITIES = f"{PREFIX}.capabilities"
STATUS = f"{PREFIX}.status"
STATS = f"{PREFIX}.stats"

QUEUE_GROUP = "integrations"

# JetStream object store used as a claim check for payloads above the server's max_payload.
PAYLOAD_BUCKET = "integrations-payloads"
PAYLOAD_TTL_S = 600.0
PAYLOAD_BUCKET_DESCRIPTION = "claim checks for payloads above max_payload"
