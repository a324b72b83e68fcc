"""The first step of every authenticated command: who is calling, and in which org.

Org resolution happens here, once, in the worker; every later step (credentials, usage,
registry, limits) uses `Caller.org`.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from contracts import headers as h
from service.auth.principal import Authenticator, Principal, resolve_org


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    org: str


class Access:
    def __init__(self, authenticator: Authenticator, default_org: str) -> None:
        self.authenticator = authenticator
        self.default_org = default_org

    async def caller(self, headers: Mapping[str, str]) -> Caller:
        principal = await self.authenticator.authenticate(headers)
        return Caller(principal, resolve_org(principal, headers.get(h.ORG_ID), self.default_org))
