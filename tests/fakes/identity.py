"""A fake of the Symbia Identity service: the endpoints the gateway calls (reference §2.3, §4.1),
answering as the original's Identity does (identity/server/src/routes.ts, symbia-auth).

* `POST /api/auth/introspect` {token}: users (`sub`, organizations, entitlements, isSuperAdmin)
  and agents (`agentId`, `orgId`, capabilities); expired or revoked tokens are `active: false`.
* `POST /api/auth/verify-api-key` {apiKey}: `{valid, keyId, name, orgId, scopes, creator}`.
* `GET /api/users/me` with a `symbia_session` cookie (a server-side session, not a JWT).
* `GET /api/internal/credentials/{userId}/{provider}`: needs an active bearer, and
  `X-Service-Id: integrations` or the bearer's own user; the user's personal credential first,
  else an org-wide credential of the `X-Org-Id` org (Identity itself does not check membership).
* `GET /api/internal/credentials/by-id/{id}`: needs `X-Service-Id`; returns owner, org, provider.
* `GET /.well-known/jwks.json`: `jwks` (for the local-mode RS256 tests).

Tokens are opaque random strings here: the gateway never reads them, only Identity does.
"""

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import JSON, LoopbackServer

SERVICES = ("integrations", "assistants", "runtime")


@dataclass
class User:
    id: str
    orgs: list[str]
    entitlements: list[str] = field(default_factory=list)
    super_admin: bool = False

    @property
    def email(self) -> str:
        return f"{self.id}@example.test"


@dataclass
class Agent:
    id: str
    agent_id: str
    org: str | None
    capabilities: list[str] = field(default_factory=list)


@dataclass
class StoredCredential:
    id: str
    provider: str
    owner_id: str
    org_id: str | None
    api_key: str
    org_wide: bool = False


class FakeIdentity(LoopbackServer):
    name = "fake-identity"

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, User] = {}
        self.agents: dict[str, Agent] = {}
        self.tokens: dict[str, dict[str, Any]] = {}       # token → {kind, sub, exp, revoked}
        self.api_keys: dict[str, dict[str, Any]] = {}     # key → {keyId, name, orgId, creator}
        self.sessions: dict[str, str] = {}                # symbia_session value → user id
        self.credentials: dict[str, StoredCredential] = {}
        self.jwks: dict[str, Any] = {"keys": []}
        service = self.add_agent("integrations-service", "service:integrations", org=None)
        self.service_token = self.issue(service.id, kind="agent")

    # --- directory -------------------------------------------------------------------------

    def add_user(self, user_id: str, orgs: list[str], *, entitlements: list[str] | None = None,
                 super_admin: bool = False) -> str:
        """Adds a user and returns a fresh token of theirs."""
        self.users[user_id] = User(user_id, orgs, entitlements or [], super_admin)
        return self.issue(user_id)

    def add_agent(self, agent_uuid: str, agent_id: str, org: str | None, capabilities: list[str] | None = None):
        agent = Agent(agent_uuid, agent_id, org, capabilities or [])
        self.agents[agent_uuid] = agent
        return agent

    def issue(self, subject: str, *, kind: str = "user", ttl_s: float = 3600) -> str:
        token = f"tok_{secrets.token_urlsafe(24)}"
        self.tokens[token] = {"kind": kind, "sub": subject, "exp": int(time.time() + ttl_s), "revoked": False}
        return token

    def revoke(self, token: str) -> None:
        self.tokens[token]["revoked"] = True

    def add_api_key(self, *, org: str | None, creator: str | None = None, scopes: list[str] | None = None) -> str:
        key = f"sk_sym_{secrets.token_urlsafe(24)}"
        self.api_keys[key] = {"keyId": secrets.token_hex(4), "name": "test key", "orgId": org, "creator": creator,
                              "scopes": scopes or []}
        return key

    def add_session(self, user_id: str) -> str:
        value = f"sess_{secrets.token_urlsafe(16)}"
        self.sessions[value] = user_id
        return value

    def add_credential(self, provider: str, *, owner: str, api_key: str, org: str | None = None,
                       org_wide: bool = False) -> str:
        cred_id = f"cred_{secrets.token_hex(6)}"
        self.credentials[cred_id] = StoredCredential(cred_id, provider, owner, org, api_key, org_wide)
        return cred_id

    # --- HTTP ------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/auth/introspect", self.introspect)
        app.router.add_post("/api/auth/verify-api-key", self.verify_api_key)
        app.router.add_get("/api/users/me", self.users_me)
        app.router.add_get("/api/internal/credentials/by-id/{id}", self.credential_by_id)
        app.router.add_get("/api/internal/credentials/{user}/{provider}", self.credential)
        app.router.add_get("/.well-known/jwks.json", self.keys)

    def _active(self, token: str | None) -> dict[str, Any] | None:
        entry = self.tokens.get(token or "")
        if entry is None or entry["revoked"] or entry["exp"] <= time.time():
            return None
        return entry

    def _user_json(self, user: User) -> dict[str, Any]:
        return {"id": user.id, "email": user.email, "name": user.id.title(), "isSuperAdmin": user.super_admin,
                "organizations": [{"id": o, "name": o.title(), "slug": o, "role": "member"} for o in user.orgs],
                "entitlements": user.entitlements, "roles": []}

    async def introspect(self, request: web.Request) -> web.Response:
        token = (request[JSON] or {}).get("token")
        entry = self._active(token)
        if entry is None:
            return web.json_response({"active": False})
        if entry["kind"] == "agent":
            agent = self.agents[entry["sub"]]
            return web.json_response({"active": True, "type": "agent", "sub": agent.id, "agentId": agent.agent_id,
                                      "name": agent.agent_id, "orgId": agent.org, "capabilities": agent.capabilities,
                                      "token_type": "Bearer", "exp": entry["exp"]})
        user = self.users[entry["sub"]]
        body = self._user_json(user)
        return web.json_response({"active": True, "type": "user", "sub": body.pop("id"), **body,
                                  "token_type": "Bearer", "exp": entry["exp"]})

    async def verify_api_key(self, request: web.Request) -> web.Response:
        entry = self.api_keys.get((request[JSON] or {}).get("apiKey", ""))
        if entry is None:
            return web.json_response({"valid": False, "error": "Invalid API key"})
        creator = self.users.get(entry["creator"] or "")
        return web.json_response({
            "valid": True, "keyId": entry["keyId"], "name": entry["name"], "orgId": entry["orgId"],
            "scopes": entry["scopes"],
            "creator": {"id": creator.id, "email": creator.email, "entitlements": creator.entitlements} if creator
            else None,
        })

    async def users_me(self, request: web.Request) -> web.Response:
        user = self.users.get(self.sessions.get(request.cookies.get("symbia_session", ""), ""))
        if user is None:
            return web.json_response({"message": "Authentication required"}, status=401)
        return web.json_response(self._user_json(user))

    def _service_call(self, request: web.Request, user_id: str | None) -> web.Response | None:
        entry = self._active(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if entry is None:
            return web.json_response({"message": "Invalid or expired token"}, status=401)
        if request.headers.get("X-Service-Id") not in SERVICES and entry["sub"] != user_id:
            return web.json_response({"message": "Forbidden"}, status=403)
        return None

    @staticmethod
    def _lookup_json(cred: StoredCredential, user_id: str) -> dict[str, Any]:
        return {"apiKey": cred.api_key, "metadata": {}, "credentialId": cred.id, "isProxy": cred.owner_id != user_id,
                "ownerId": cred.owner_id, "isOrgWide": cred.org_wide}

    async def credential(self, request: web.Request) -> web.Response:
        user_id, provider = request.match_info["user"], request.match_info["provider"]
        if (denied := self._service_call(request, user_id)) is not None:
            return denied
        org = request.headers.get("X-Org-Id")
        mine = [c for c in self.credentials.values() if c.owner_id == user_id and c.provider == provider]
        shared = [c for c in self.credentials.values()
                  if c.org_wide and c.org_id == org and c.provider == provider]
        for cred in mine + shared:
            return web.json_response(self._lookup_json(cred, user_id))
        return web.json_response({"message": "Credential not found"}, status=404)

    async def credential_by_id(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Service-Id") not in SERVICES:
            return web.json_response({"message": "Forbidden"}, status=403)
        cred = self.credentials.get(request.match_info["id"])
        if cred is None:
            return web.json_response({"message": "Credential not found"}, status=404)
        return web.json_response({"apiKey": cred.api_key, "metadata": {}, "credentialId": cred.id,
                                  "ownerId": cred.owner_id, "orgId": cred.org_id, "provider": cred.provider,
                                  "isOrgWide": cred.org_wide})

    async def keys(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks)
