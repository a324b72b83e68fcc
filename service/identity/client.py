"""Calls to the Identity service (reference §2.3, §4.1, Appendix B), each with a timeout.

Every call either returns the decoded JSON answer, returns None when Identity says "no" (a
4xx: unknown token, no such credential), or raises the 503 `identity_unavailable` envelope when
Identity cannot answer (connection refused, timeout, 5xx, unreadable body). Tokens and keys go
in headers and bodies only, never in URLs or logs.
"""

import logging
from typing import Any
from urllib.parse import quote

from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError
from service.providers.base import UpstreamCall
from service.transport import UpstreamTransport

log = logging.getLogger("symbia.integrations.identity")

SERVICE_ID = "integrations"
_FAMILY = "identity"


def identity_unavailable(detail: str) -> GatewayError:
    return GatewayError(f"The Identity service is unavailable ({detail}); retry shortly", ErrorCategory.network,
                        status=503, retryable=True, reason=Reason.IDENTITY_UNAVAILABLE)


class IdentityClient:
    def __init__(self, base_url: str, transport: UpstreamTransport, timeout_s: float) -> None:
        base = base_url.rstrip("/")
        # As symbia-auth's buildIdentityUrl: a base URL may already end with /api.
        self._api = base if base.endswith("/api") else f"{base}/api"
        self._transport = transport
        self._timeout_s = timeout_s
        self.calls = 0      # round trips made (measured in tests and reported in docs/IDENTITY.md)

    async def introspect(self, token: str) -> dict[str, Any] | None:
        return await self._call("introspect", "POST", "/auth/introspect", {"token": token},
                                {"authorization": f"Bearer {token}"})

    async def verify_api_key(self, api_key: str) -> dict[str, Any] | None:
        return await self._call("verify-api-key", "POST", "/auth/verify-api-key", {"apiKey": api_key}, {})

    async def current_user(self, cookie_name: str, cookie_value: str) -> dict[str, Any] | None:
        return await self._call("users-me", "GET", "/users/me", None, {"cookie": f"{cookie_name}={cookie_value}"})

    async def credential(self, user_id: str, provider: str, bearer: str, org: str) -> dict[str, Any] | None:
        path = f"/internal/credentials/{quote(user_id, safe='')}/{quote(provider, safe='')}"
        return await self._call("credential", "GET", path, None, self._service_headers(bearer, org))

    async def credential_by_id(self, credential_id: str, bearer: str, org: str) -> dict[str, Any] | None:
        path = f"/internal/credentials/by-id/{quote(credential_id, safe='')}"
        return await self._call("credential-by-id", "GET", path, None, self._service_headers(bearer, org))

    @staticmethod
    def _service_headers(bearer: str, org: str) -> dict[str, str]:
        return {"authorization": f"Bearer {bearer}", "x-service-id": SERVICE_ID, "x-org-id": org}

    async def _call(self, operation: str, method: str, path: str, body: Any,
                    headers: dict[str, str]) -> dict[str, Any] | None:
        self.calls += 1
        call = UpstreamCall(method, self._api + path, body, headers)
        try:
            response = await self._transport.send(_FAMILY, call, self._timeout_s, provider="identity",
                                                  operation=operation)
        except GatewayError as exc:
            log.warning("identity %s failed: %s", operation, exc.reason)
            raise identity_unavailable(
                "timed out" if exc.category == ErrorCategory.timeout else "unreachable") from None
        if response.status >= 500:
            log.warning("identity %s answered %d", operation, response.status)
            raise identity_unavailable(f"status {response.status}")
        if response.status >= 400:
            return None
        if not isinstance(response.payload, dict):
            log.warning("identity %s answered %d with a body that is not a JSON object", operation, response.status)
            raise identity_unavailable("unreadable answer")
        return response.payload
