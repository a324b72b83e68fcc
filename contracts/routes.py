"""The HTTP route table: every documented route and the bus subject behind it.

One table drives the HTTP adapter's routing, the generated OpenAPI document, llms.txt and
the AsyncAPI reply schemas, so they cannot drift apart. Each capability module declares its
own `ROUTES`; this module only collects them. A route's request travels as follows
(DESIGN.md §3):

* POST without path parameters: the HTTP body, byte for byte.
* GET and DELETE (and POST or PUT with path parameters): a JSON object of the path and query
  parameters (POST, PUT: plus the parsed body under the key ``body``).
"""

from contracts import discovery, execute, invoke, jobs, mcp, openai, registry, resilience, usage
from contracts.envelope import ErrorEnvelope
from contracts.http import ALIAS_PREFIX, API_PREFIX, QueryParam, Route

ROUTES: tuple[Route, ...] = (
    *execute.ROUTES,
    *discovery.ROUTES,
    *registry.ROUTES,
    *invoke.ROUTES,
    *mcp.ROUTES,
    *openai.ROUTES,
    *jobs.ROUTES,
    *usage.ROUTES,
    *resilience.ROUTES,
)

ERROR_MODEL = ErrorEnvelope

__all__ = ["ALIAS_PREFIX", "API_PREFIX", "ERROR_MODEL", "ROUTES", "QueryParam", "Route"]
