"""The first step of every authenticated command: who is calling, and in which org.

Org resolution happens here, once, in the worker; every later step (credentials, usage,
registry, limits) uses `Caller.org`.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from service.auth.principal import Authenticator, Principal, resolve_org
from service.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    org: str


class AuthenticatedHeaders(dict[str, str]):
    """The headers of a command whose caller was established before it ran: a job, whose caller
    was authenticated at submission and is vouched for by a verified grant (service/jobs). Only
    the job runner builds one; the bus glue always passes the message's own plain dict, so no
    wire header can skip authentication."""

    __slots__ = ("caller",)

    def __init__(self, headers: Mapping[str, str], caller: "Caller") -> None:
        super().__init__(headers)
        self.caller = caller


class Access:
    def __init__(self, authenticator: Authenticator, default_org: str | None) -> None:
        """`default_org`: the org of callers that name none and belong to none (local mode);
        None in Identity mode, where such a caller gets a 400."""
        self.authenticator = authenticator
        self.default_org = default_org

    async def caller(self, headers: Mapping[str, str]) -> Caller:
        if isinstance(headers, AuthenticatedHeaders):
            return headers.caller
        principal = await self.authenticator.authenticate(headers)
        return Caller(principal, resolve_org(principal, headers.get(h.ORG_ID), self.default_org))


def require_admin(caller: Caller, action: str = "do this") -> None:
    """The one check for operator actions (breaker reset, db export, global registry writes):
    the `integrations:admin` / `cap:integrations.admin` entitlement, or an Identity super admin."""
    if not caller.principal.is_admin:
        raise GatewayError(f"The integrations:admin entitlement is required to {action}", ErrorCategory.auth,
                           status=403, reason=Reason.ADMIN_REQUIRED)
