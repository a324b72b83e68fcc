"""How an HTTP route maps onto the bus (see contracts/routes.py for the table)."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from contracts.streaming import StreamRoute

API_PREFIX = "/api/integrations"
# The original's generated docs list every path under /api/api/...; both prefixes are served.
ALIAS_PREFIX = "/api/api"

DEFAULT_ERROR_STATUSES = (400, 401, 403, 413, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    type: str = "string"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    subject: str
    summary: str
    tag: str
    auth: bool = True
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    query: tuple[QueryParam, ...] = ()
    description: str = ""
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    # Streams when the body asks for it (`"stream": true`): subject and SSE dialect.
    stream: StreamRoute | None = None
    # `openai`: errors in OpenAI's `{"error": {...}}` shape (the /v1 routes), else the envelope.
    error_format: Literal["envelope", "openai"] = "envelope"
    # Also served under ALIAS_PREFIX (the original's /api/api/... paths); not for /v1 routes.
    aliased: bool = True
    success_status: int = 200

    @property
    def alias_path(self) -> str:
        return ALIAS_PREFIX + self.path.removeprefix("/api")

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, self.alias_path) if self.aliased else (self.path,)
