"""CallRecord: what the pipeline learned about one call that got past authentication.

Handlers fill it in as they go (`command.record`); when the reply is sent, the bus glue adds
the outcome (status, error category, duration) and hands it to the usage pipeline. A call
that never authenticated has no record and is not usage.
"""

from dataclasses import dataclass

from service.auth.access import Caller


@dataclass(slots=True)
class CallRecord:
    kind: str                                   # execute | invoke | mcp
    principal_id: str
    principal_type: str
    org: str
    integration: str | None = None              # provider name or integration key
    operation: str | None = None
    model_requested: str | None = None
    model_served: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    credential_source: str | None = None        # personal | org-wide | service | env | none
    credential_id: str | None = None
    streamed: bool = False                      # answered as a stream (SSE / stream subject)
    partial: bool = False                       # the stream stopped early (client gone, upstream failure)
    usage_estimated: bool = False               # tokens counted by the gateway, not reported by the upstream
    attempts: int = 0                           # upstream attempts made: retries and fallbacks included

    @classmethod
    def start(cls, kind: str, caller: Caller) -> "CallRecord":
        return cls(kind=kind, principal_id=caller.principal.id, principal_type=caller.principal.type,
                   org=caller.org)

    def add_usage(self, usage: dict) -> None:
        """From a normalized `usage` object (promptTokens, completionTokens, totalTokens)."""
        self.prompt_tokens = int(usage.get("promptTokens") or 0)
        self.completion_tokens = int(usage.get("completionTokens") or 0)
        self.total_tokens = int(usage.get("totalTokens") or 0) or self.prompt_tokens + self.completion_tokens
