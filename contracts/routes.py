"""The HTTP route table: every documented route and the bus subject behind it.

One table drives the HTTP adapter's routing, the generated OpenAPI document and llms.txt,
so the three cannot drift apart. A route's request travels as follows (DESIGN.md §3):

* POST without path parameters: the HTTP body, byte for byte.
* GET (and POST with path parameters): a JSON object of the path and query parameters
  (POST: plus the parsed body under the key ``body``).
"""

from dataclasses import dataclass, field

from pydantic import BaseModel

from contracts import subjects
from contracts.envelope import ErrorEnvelope
from contracts.execute import ExecuteRequest, ExecuteSuccess

API_PREFIX = "/api/integrations"
# The original's generated docs list every path under /api/api/...; both prefixes are served.
ALIAS_PREFIX = "/api/api"


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
    error_statuses: tuple[int, ...] = field(default=(400, 401, 403, 413, 429, 500, 502, 503, 504))

    @property
    def alias_path(self) -> str:
        return ALIAS_PREFIX + self.path.removeprefix("/api")


ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path=f"{API_PREFIX}/execute",
        subject=subjects.EXECUTE,
        summary="Run an LLM operation (chat completion, text generation, embeddings) on a provider",
        tag="execute",
        request_model=ExecuteRequest,
        response_model=ExecuteSuccess,
        description=(
            "Normalizes the provider's answer into one shape. Provider keys are resolved by the gateway; "
            "callers never send them. Errors use the one error envelope."
        ),
        error_statuses=(400, 401, 402, 403, 413, 422, 429, 500, 502, 503, 504),
    ),
)

ERROR_MODEL = ErrorEnvelope
