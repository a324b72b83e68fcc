"""The one principal model for users, agents, API keys and services."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from service.errors import GatewayError

ADMIN_ENTITLEMENTS = frozenset({"integrations:admin", "cap:integrations.admin"})
# Org ids end up in NATS subjects (usage events per org), so they must be one subject token.
_ORG_ID = re.compile(r"^[A-Za-z0-9_:\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    type: str                                   # user | agent | api_key | service
    organizations: tuple[str, ...] | None       # None: may act in any org (operator keys)
    entitlements: frozenset[str] = frozenset()
    default_org: str | None = None
    name: str | None = None
    token: str | None = field(default=None, repr=False)   # forwardable bearer, never logged
    super_admin: bool = False                   # Identity's isSuperAdmin: a platform operator

    @property
    def is_admin(self) -> bool:
        """Global admin: may act in any org and run operator actions (service.auth.access.require_admin)."""
        return self.super_admin or bool(self.entitlements & ADMIN_ENTITLEMENTS)


class Authenticator(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> Principal: ...


def unauthenticated() -> GatewayError:
    return GatewayError("Authentication required", ErrorCategory.auth, reason=Reason.UNAUTHENTICATED)


def caller_key(headers: Mapping[str, str]) -> str | None:
    """The API key or bearer token a caller presented (X-API-Key wins)."""
    key = headers.get(h.API_KEY)
    if key:
        return key.strip()
    auth = headers.get(h.AUTHORIZATION, "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def resolve_org(principal: Principal, requested: str | None, fallback: str | None) -> str:
    """X-Org-Id, else the principal's own org, else its first membership, else the fallback
    (local mode's default org; none in Identity mode: 400); a principal may only act in its
    own orgs unless it holds the admin entitlement."""
    org = (requested or "").strip() or principal.default_org or (
        principal.organizations[0] if principal.organizations else fallback)
    if not org:
        raise GatewayError("Organization context required. Provide X-Org-Id header.", ErrorCategory.validation,
                           reason=Reason.ORG_REQUIRED)
    if not _ORG_ID.match(org):
        raise GatewayError("Invalid X-Org-Id: use letters, digits, '_', '-' or ':' (at most 128)",
                           ErrorCategory.validation, reason=Reason.INVALID_REQUEST)
    if principal.organizations is not None and org not in principal.organizations and not principal.is_admin:
        raise GatewayError(f"Not a member of organization {org}", ErrorCategory.auth, status=403,
                           reason=Reason.ORG_FORBIDDEN)
    return org
