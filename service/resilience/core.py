"""`Resilience`: the breakers, limiter, org policies and retry policy of one worker, built from its
settings, and the estimates the execute pipeline reserves tokens with."""

from collections.abc import Mapping

from contracts.execute import ExecuteParams
from contracts.resilience import FallbackTarget
from service.resilience.breaker import BreakerPolicy
from service.resilience.breakers import Breakers
from service.resilience.deadline import Deadline
from service.resilience.limits import LimitDefaults, RateLimiter
from service.resilience.policies import OrgPolicies
from service.resilience.retry import RetryPolicy
from service.settings import Settings

# Completion tokens reserved for a call that does not say (no maxTokens); corrected afterwards.
COMPLETION_ESTIMATE = 256


def _estimate(text: str) -> int:
    return (len(text) + 3) // 4


def token_estimate(operation: str, params: ExecuteParams) -> int:
    """Tokens a call will probably use, for TPM reservations: its prompt (~4 characters a token)
    plus its maxTokens (or COMPLETION_ESTIMATE); embeddings: their input."""
    parts = [params.prompt or "", params.system or "", params.systemPrompt or "", params.instructions or "",
             params.text or ""]
    if isinstance(params.input, str):
        parts.append(params.input)
    elif isinstance(params.input, list):
        parts.extend(item if isinstance(item, str) else str(item) for item in params.input)
    for message in params.messages or ():
        if isinstance(message.content, str):
            parts.append(message.content)
        elif isinstance(message.content, list):
            parts.extend(p.get("text", "") for p in message.content if isinstance(p, dict))
    prompt = sum(_estimate(p) for p in parts)
    if operation == "embeddings":
        return max(1, prompt)
    return prompt + (params.maxTokens or COMPLETION_ESTIMATE)


class Resilience:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policies = OrgPolicies()
        self.breakers = Breakers(
            BreakerPolicy(failure_threshold=settings.breaker_failure_threshold, cooldown_s=settings.breaker_cooldown_s,
                          success_threshold=settings.breaker_success_threshold,
                          failure_rate=settings.breaker_failure_rate, rate_window_s=settings.breaker_rate_window_s,
                          rate_min_requests=settings.breaker_rate_min_requests),
            enabled=settings.breaker_enabled, per_credential=settings.breaker_per_credential)
        defaults = LimitDefaults(
            user_rpm=settings.rate_limit_user_rpm, org_rpm=settings.rate_limit_org_rpm,
            user_tpm=settings.rate_limit_user_tpm, org_tpm=settings.rate_limit_org_tpm,
            provider_rpm=lambda p: settings.provider_limit(settings.rate_limit_provider_rpm, p),
            provider_tpm=lambda p: settings.provider_limit(settings.rate_limit_provider_tpm, p))
        self.limiter = RateLimiter(defaults, self.policies, enabled=settings.rate_limit_enabled,
                                   lease_fraction=settings.rate_limit_lease,
                                   lease_ttl_s=settings.rate_limit_lease_ttl_s)
        self.retry = RetryPolicy(max_retries=settings.retry_max_retries, base_delay_s=settings.retry_base_delay_s,
                                 max_delay_s=settings.retry_max_delay_s)
        self._margin_s = settings.deadline_margin_ms / 1000

    async def start(self, nc) -> None:
        replicas = self.settings.js_replicas
        await self.policies.start(nc, replicas)
        await self.breakers.start(nc, replicas)
        await self.limiter.start(nc, replicas)

    async def close(self) -> None:
        await self.limiter.close()
        await self.breakers.close()
        await self.policies.close()

    def deadline(self, headers: Mapping[str, str], started: float, body_timeout_ms: int | None = None
                 ) -> Deadline | None:
        return Deadline.of(headers, started, body_timeout_ms, self._margin_s)

    def default_fallbacks(self, org: str, operation: str) -> list[FallbackTarget]:
        policy = self.policies.get(org)
        return list(policy.fallbacks.get(operation, ())) if policy is not None else []
