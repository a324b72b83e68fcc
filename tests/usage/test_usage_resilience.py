"""Resilience outcomes are usage (docs/USAGE.md, docs/RESILIENCE.md): a call the rate limiter or
an open circuit refuses after authentication is an event with its status, category and reason;
retries show in `attempts`, a fallback in the serving provider and model. Read from the usage
stream with a plain consumer and from the store."""

from service.providers.models import cost_usd_micros
from tests.conftest import ANTHROPIC_KEY
from tests.usage.conftest import chat, gateway, new_org, stream_events

ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"     # has a price (service/providers/models.json)
EXECUTE = "integrations.v1.execute"


def resilience_on(llmock) -> dict:
    """Breakers (3 failures open a circuit for long enough), limits (only the org policy's),
    quick retries, and anthropic as a fallback target."""
    return {"breaker_enabled": True, "breaker_failure_threshold": 3, "breaker_failure_rate": 0.0,
            "breaker_cooldown_s": 60.0, "rate_limit_enabled": True, "rate_limit_user_rpm": 0, "rate_limit_org_rpm": 0,
            "rate_limit_provider_rpm": 0, "retry_max_retries": 2, "retry_base_delay_s": 0.01,
            "anthropic_base_url": f"{llmock.url}/anthropic", "anthropic_api_key": ANTHROPIC_KEY}


async def test_refusals_retries_and_fallbacks_are_usage_events(llmock):
    async with gateway("sqlite", llmock.base_url, **resilience_on(llmock)) as g:
        # the org limit: one request a minute in this org
        limited_org = new_org()
        status, _, _ = await g.call("integrations.v1.policy.put", {"org": limited_org,
                                                                   "body": {"rateLimits": {"orgRpm": 1}}},
                                    key=g.admin_key)
        assert status == 200
        first = await g.execute(limited_org)
        limited = await g.execute(limited_org)
        assert (first[0], limited[0], limited[1]["reason"]) == (200, 429, "rate_limit_org_requests")

        org = new_org()
        # retried: two 503s, then the answer
        llmock.scenario({"type": "fail", "status": 503, "retry_after": 0, "times": 2})
        retried = await g.execute(org)
        assert retried[0] == 200 and retried[1]["data"]["metadata"]["attempts"] == 3
        # fallback: openai keeps failing (three attempts, which open its circuit), anthropic serves
        llmock.reset()
        llmock.scenario({"type": "fail", "status": 502, "retry_after": 0, "times": None,
                         "match": {"provider": "openai"}})
        fell_back = await g.call(EXECUTE, {**chat(), "fallbacks": [{"provider": "anthropic",
                                                                    "model": ANTHROPIC_MODEL}]}, org=org)
        assert fell_back[0] == 200 and fell_back[1]["data"]["provider"] == "anthropic"
        # the open circuit refuses at once
        circuit = await g.execute(org)
        assert circuit[0] == 503 and circuit[1]["reason"] == "circuit_open"

        events = {e["requestId"]: e for e in await stream_events(g.nc, limited_org)}
        assert len(events) == 2
        refused = events[limited[1]["requestId"]]
        assert (refused["success"], refused["statusCode"], refused["errorCategory"], refused["errorReason"]) == (
            False, 429, "rate_limit", "rate_limit_org_requests")
        assert refused["attempts"] == 0 and refused["integration"] == "openai" and refused["totalTokens"] == 0
        assert events[first[1]["requestId"]]["attempts"] == 1

        events = {e["requestId"]: e for e in await stream_events(g.nc, org)}
        assert len(events) == 3
        event = events[retried[1]["requestId"]]
        assert event["success"] is True and event["attempts"] == 3 and event["integration"] == "openai"
        event = events[fell_back[1]["requestId"]]
        assert event["success"] is True and event["attempts"] == 4            # 3 on openai, 1 on anthropic
        assert event["integration"] == "anthropic" and event["modelServed"] == fell_back[1]["data"]["model"]
        assert event["modelRequested"] == "gpt-4o-mini" and event["totalTokens"] > 0
        # priced as the model that served it
        assert event["costMicros"] == cost_usd_micros("anthropic", event["modelServed"], event["promptTokens"],
                                                      event["completionTokens"]) is not None
        event = events[circuit[1]["requestId"]]
        assert (event["statusCode"], event["errorCategory"], event["errorReason"], event["attempts"]) == (
            503, "provider", "circuit_open", 0)

        # the store took all of them (the writer validates every event against the contract)
        summary = await g.wait_rows(org, 3)
        by_integration = {row["integrationKey"]: row for row in summary["byIntegration"]}
        assert by_integration["openai"]["requestCount"] == 2 and by_integration["openai"]["errorCount"] == 1
        assert by_integration["anthropic"]["successCount"] == 1
        assert (await g.wait_rows(limited_org, 2))["summary"]["errorCount"] == 1
