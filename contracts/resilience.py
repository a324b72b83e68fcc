"""Circuit breakers, rate limits and org policies (docs/RESILIENCE.md).

Circuit breakers (reference §9.1, fixed): `GET /circuit-breaker` keeps the original's shape
`{"status": {"<name>": {"state", "failures", "lastFailure"}}, "description"}` with `state` one of
`closed`, `open`, `half-open`; resets are admin-only. A breaker's name is the provider
(`openai`), the provider and a credential (`openai.c-<hash>`, with
INTEGRATIONS_BREAKER_PER_CREDENTIAL), or a registered integration (`integration.<key>` for a
global entry, `integration.<org>.<key>` for an org's own). Every transition is published on
`integrations.v1.events.breaker.<name>` as a `BreakerEvent`.

Org policies: per-org overrides of the rate limits and the org's default fallback chains,
stored in a KV bucket shared by every worker; read by the org's members, written by admins.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.http import API_PREFIX, Route

BreakerStateName = Literal["closed", "open", "half-open"]

BREAKER_DESCRIPTION = ("Circuit breaker protects against cascading failures. Open circuits reject requests until "
                       "recovery.")


class BreakerInfo(BaseModel):
    """One circuit. `failures`: consecutive failures counted while closed (the original's field);
    `retryAfterS`: while open, seconds until a probe request is let through."""

    state: BreakerStateName
    failures: int
    lastFailure: str = Field(description="ISO time of the last failure, or \"never\"")
    retryAfterS: float | None = None
    provider: str | None = Field(None, description="the provider (or integration key) this circuit protects")
    credentialId: str | None = None
    org: str | None = Field(None, description="org of an org-scoped integration's circuit")


class BreakerStatusReply(BaseModel):
    status: dict[str, BreakerInfo]
    description: str = BREAKER_DESCRIPTION


class BreakerResetAllRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BreakerResetRequest(BaseModel):
    """Bus request of `POST /circuit-breaker/reset/{provider}`: `{provider, body}` (body ignored)."""

    model_config = ConfigDict(extra="ignore")

    provider: str = Field(min_length=1, max_length=256)


class BreakerResetReply(BaseModel):
    success: Literal[True] = True
    message: str
    status: dict[str, BreakerInfo]


class BreakerEvent(BaseModel):
    """Published on `integrations.v1.events.breaker.<name>` by the worker that made the transition
    (exactly once per transition: transitions are compare-and-set writes)."""

    name: str
    provider: str
    state: BreakerStateName
    previous: BreakerStateName
    failures: int
    at: str
    reason: str = Field(description="threshold | failure_rate | cooldown_elapsed | probe_failed | "
                                    "probe_succeeded | reset")
    retryAfterS: float | None = None


# --- org policies -----------------------------------------------------------------------------


class RateLimitOverrides(BaseModel):
    """Per-org replacements of the INTEGRATIONS_RATE_LIMIT_* defaults; absent = the default,
    0 = unlimited. Per minute; `user*` limits apply to each principal within the org."""

    model_config = ConfigDict(extra="forbid")

    userRpm: int | None = Field(None, ge=0)
    userTpm: int | None = Field(None, ge=0)
    orgRpm: int | None = Field(None, ge=0)
    orgTpm: int | None = Field(None, ge=0)


class FallbackTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256)


class OrgPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rateLimits: RateLimitOverrides = Field(default_factory=RateLimitOverrides)
    fallbacks: dict[str, list[FallbackTarget]] = Field(
        default_factory=dict,
        description="default fallback chain per operation (e.g. chat.completions), used when an execute "
                    "request has no `fallbacks` of its own",
    )


class OrgRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    org: str = Field(min_length=1, max_length=128)


class OrgPolicyWrite(BaseModel):
    """Bus request of `PUT /orgs/{org}/policy`: `{org, body: OrgPolicy}`."""

    model_config = ConfigDict(extra="ignore")

    org: str = Field(min_length=1, max_length=128)
    body: OrgPolicy


class EffectiveLimits(BaseModel):
    userRpm: int
    userTpm: int
    orgRpm: int
    orgTpm: int


class OrgPolicyReply(BaseModel):
    org: str
    policy: OrgPolicy
    effective: EffectiveLimits = Field(description="the limits in force for the org (0 = unlimited)")
    updatedAt: str | None = None


_ERRORS = (400, 401, 403, 500, 503, 504)

ROUTES = (
    Route("GET", f"{API_PREFIX}/circuit-breaker", subjects.BREAKER_STATUS, "Circuit-breaker states", "resilience",
          request_model=BreakerResetAllRequest, response_model=BreakerStatusReply, error_statuses=_ERRORS,
          description="Every provider's circuit, and those of the caller's org's integrations that have "
                      "recorded failures."),
    Route("POST", f"{API_PREFIX}/circuit-breaker/reset", subjects.BREAKER_RESET, "Close every circuit (admin)",
          "resilience", request_model=BreakerResetAllRequest, response_model=BreakerResetReply,
          error_statuses=_ERRORS),
    Route("POST", f"{API_PREFIX}/circuit-breaker/reset/{{provider}}", subjects.BREAKER_RESET_ONE,
          "Close one circuit (admin)", "resilience", request_model=BreakerResetRequest,
          response_model=BreakerResetReply, error_statuses=_ERRORS,
          description="`provider` is a circuit name as listed by GET /circuit-breaker (unknown names are accepted "
                      "and reset nothing, as in the original)."),
    Route("GET", f"{API_PREFIX}/orgs/{{org}}/policy", subjects.POLICY_GET,
          "An org's rate-limit overrides and default fallback chains", "resilience", request_model=OrgRef,
          response_model=OrgPolicyReply, error_statuses=_ERRORS,
          description="Members of the org or admins."),
    Route("PUT", f"{API_PREFIX}/orgs/{{org}}/policy", subjects.POLICY_PUT,
          "Replace an org's rate-limit overrides and default fallback chains (admin)", "resilience",
          request_model=OrgPolicy, response_model=OrgPolicyReply, error_statuses=_ERRORS,
          description="Bus request: `{org, body}`. Applies on every worker within a second."),
    Route("DELETE", f"{API_PREFIX}/orgs/{{org}}/policy", subjects.POLICY_DELETE,
          "Remove an org's policy: back to the defaults (admin)", "resilience", request_model=OrgRef,
          response_model=OrgPolicyReply, error_statuses=_ERRORS),
)
