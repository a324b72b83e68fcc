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

# Streaming request-reply (docs/STREAMING.md): several messages per request on the
# requester's reply subject (start, chunks with sequence numbers, a terminal end or error).
EXECUTE_STREAM = f"{PREFIX}.execute.stream"

# OpenAI-compatible wire format (the /v1 routes): same pipeline as execute, OpenAI bodies.
OPENAI_CHAT = f"{PREFIX}.openai.chat.completions"
OPENAI_CHAT_STREAM = f"{PREFIX}.openai.chat.completions.stream"
OPENAI_EMBEDDINGS = f"{PREFIX}.openai.embeddings"
OPENAI_MODELS = f"{PREFIX}.openai.models"
