"""Circuit breakers against llmock faults, shared by two workers through NATS KV."""

import asyncio
import time

import orjson

from tests.conftest import CALLER_KEY
from tests.resilience.conftest import P, chat
from tests.streaming.helpers import wait_for

DOWN = {"type": "fail", "status": 503, "retry_after": 0, "times": None}


async def open_circuit_on(cluster, app, llmock) -> None:
    """One request on `app`: its three attempts fail with 503 and open the openai circuit."""
    llmock.scenario(DOWN)
    reply, body = await cluster.run(app, "__call__", chat())
    assert reply.status == 502 and body["reason"] == "upstream_error", body       # llmock's 503, 3 attempts
    assert len(llmock.requests()) == 3 and "after 3 attempts" in body["error"]
    assert app.services.resilience.breakers.circuit("openai").state == "open"


async def test_an_outage_opens_the_circuit_on_both_workers_and_recovery_closes_it(cluster, llmock):
    events = []

    async def collect(msg) -> None:
        events.append((msg.subject, orjson.loads(msg.data)))

    sub = await cluster.nc.subscribe("integrations.v1.events.breaker.>", cb=collect)
    await open_circuit_on(cluster, cluster.a, llmock)
    opened_at = time.monotonic()
    # the other worker stops sending within a second (the KV watch), without calling the upstream
    await wait_for(lambda: cluster.b.services.resilience.breakers.snapshot("openai").state == "open", 1.0)
    assert time.monotonic() - opened_at < 1.0
    for app in cluster.workers:
        reply, body = await cluster.run(app, "__call__", chat())
        assert reply.status == 503 and body["reason"] == "circuit_open" and body["retryable"] is True
        assert body["category"] == "provider" and body["provider"] == "openai"
        assert reply.headers["retry-after"] in ("1", "2")            # the 2 s cool-down, rounded
    assert len(llmock.requests()) == 3

    # over HTTP: the 503 envelope and Retry-After, /circuit-breaker, /status and /capabilities
    response = await cluster.http.post(f"{P}/execute", json=chat())
    assert response.status_code == 503 and response.headers["retry-after"] in ("1", "2")
    status = (await cluster.http.get(f"{P}/circuit-breaker")).json()
    assert status["description"].startswith("Circuit breaker protects")
    assert status["status"]["openai"]["state"] == "open" and status["status"]["openai"]["failures"] == 3
    assert status["status"]["openai"]["lastFailure"].endswith("Z")
    assert status["status"]["anthropic"] == {"state": "closed", "failures": 0, "lastFailure": "never",
                                             "provider": "anthropic"}
    health = (await cluster.http.get(f"{P}/status")).json()
    assert health["status"] == "degraded" and health["circuitBreaker"]["openai"]["state"] == "open"
    caps = (await cluster.http.get(f"{P}/capabilities")).json()["byProvider"]["openai"]
    assert caps["status"] == "degraded" and caps["statusMessage"].startswith("Circuit open")

    # recovery: after the cool-down one probe goes, two successful probes close the circuit
    llmock.reset()
    await asyncio.sleep(2.05)
    for _ in range(2):
        response = await cluster.http.post(f"{P}/execute", json=chat())
        assert response.status_code == 200, response.text
    await wait_for(lambda: all(w.services.resilience.breakers.snapshot("openai").state == "closed"
                               for w in cluster.workers), 1.0)
    assert (await cluster.http.get(f"{P}/status")).json()["status"] == "healthy"
    await wait_for(lambda: len(events) >= 3, 1.0)
    await sub.unsubscribe()
    transitions = [(e["previous"], e["state"], e["reason"]) for _, e in events]
    assert transitions == [("closed", "open", "threshold"), ("open", "half-open", "cooldown_elapsed"),
                           ("half-open", "closed", "probe_succeeded")]
    assert {subject for subject, _ in events} == {"integrations.v1.events.breaker.openai"}
    assert events[0][1]["provider"] == "openai" and events[0][1]["retryAfterS"] > 0


async def test_half_open_sends_a_single_probe(cluster, llmock):
    await open_circuit_on(cluster, cluster.a, llmock)
    llmock.reset()
    llmock.scenario({"type": "delay", "seconds": 0.5})        # the probe takes a while
    await asyncio.sleep(2.05)
    replies = await asyncio.gather(*(cluster.http.post(f"{P}/execute", json=chat()) for _ in range(8)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] + [503] * 7, statuses
    assert len(llmock.requests()) == 1                        # only the probe reached the provider
    assert all(r.json()["reason"] == "circuit_open" for r in replies if r.status_code == 503)
    breakers = cluster.a.services.resilience.breakers
    # both workers see the successful probe (b learns it through the KV watch) before b sends the next
    await wait_for(lambda: all((w.services.resilience.breakers.circuit("openai").state,
                                w.services.resilience.breakers.circuit("openai").successes) == ("half-open", 1)
                               for w in cluster.workers))
    # a failed probe opens the circuit again; its retry finds the circuit open: the answer is the
    # open circuit, and the provider saw the probe only
    llmock.reset()
    llmock.scenario(DOWN)
    reply, body = await cluster.run(cluster.b, "__call__", chat())
    assert reply.status == 503 and body["reason"] == "circuit_open", body
    assert len(llmock.requests()) == 1
    await wait_for(lambda: breakers.circuit("openai").state == "open")
    assert cluster.b.services.resilience.breakers.circuit("openai").successes == 0


async def test_client_errors_never_open_the_circuit(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 400, "times": 4}, {"type": "fail", "status": 401, "times": 2},
                    {"type": "fail", "status": 404, "code": "model_not_found", "times": 2},
                    {"type": "fail", "status": 429, "retry_after": 0, "times": 6})
    statuses = []
    for _ in range(11):
        reply, _ = await cluster.run(cluster.a, "__call__", chat())
        statuses.append(reply.status)
    assert statuses[:8] == [400] * 4 + [502] * 2 + [400] * 2        # 401 from a provider is a 502 auth error
    assert statuses[8:] == [429, 429, 200]                           # 429s are retried (3 attempts each)
    assert cluster.a.services.resilience.breakers.circuit("openai") is None   # nothing was ever counted
    assert len(llmock.requests()) == 8 + 6 + 1


async def test_a_success_resets_the_consecutive_count(cluster, llmock):
    llmock.scenario({"type": "fail", "status": 500, "times": 2})
    reply, _ = await cluster.run(cluster.a, "__call__", chat())     # two failures, then the retry succeeds
    assert reply.status == 200
    breakers = cluster.a.services.resilience.breakers
    assert breakers.circuit("openai").failures == 0 and breakers.circuit("openai").state == "closed"


async def test_resets_need_the_admin_entitlement(cluster, llmock):
    await open_circuit_on(cluster, cluster.a, llmock)
    for path in ("/circuit-breaker/reset", "/circuit-breaker/reset/openai"):
        response = await cluster.http.post(P + path)
        assert response.status_code == 403 and response.json()["reason"] == "admin_required"
    assert cluster.b.services.resilience.breakers.snapshot("openai").state == "open"

    response = await cluster.http.post(f"{P}/circuit-breaker/reset/openai", headers=cluster.as_admin())
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["message"] == "Circuit breaker reset for openai" and body["status"]["openai"]["state"] == "closed"
    await wait_for(lambda: cluster.b.services.resilience.breakers.snapshot("openai").state == "closed", 1.0)
    llmock.reset()
    assert (await cluster.http.post(f"{P}/execute", json=chat())).status_code == 200

    body = (await cluster.http.post(f"{P}/circuit-breaker/reset/not-a-provider", headers=cluster.as_admin())).json()
    assert body["success"] is True and body["message"] == "Circuit breaker reset for not-a-provider"
    body = (await cluster.http.post(f"{P}/circuit-breaker/reset", headers=cluster.as_admin())).json()
    assert body == {"success": True, "message": "All circuit breakers reset", "status": body["status"]}
    assert all(info["state"] == "closed" for info in body["status"].values())
    # also on the bus, with the caller's key in headers as over HTTP
    reply = await cluster.nc.request("integrations.v1.breaker.reset", b"", timeout=5,
                                     headers={"x-api-key": CALLER_KEY})
    assert reply.headers["x-status"] == "403"


async def test_an_integration_has_its_own_circuit(cluster, llmock, httpbin, org):
    headers = {"X-Org-Id": org}
    register = {"key": "flaky", "type": "openapi", "name": "flaky",
                "openapi": {"specUrl": f"{httpbin.url}/openapi.json"}}
    assert (await cluster.http.post(f"{P}/register", json=register, headers=headers)).status_code == 200
    invoke = {"operation": "flaky.status.code.status.codes.get", "params": {"codes": "503"}}
    for _ in range(3):                      # upstream answers are replies (success false), and count as failures
        body = (await cluster.http.post(f"{P}/invoke", json=invoke, headers=headers)).json()
        assert body["success"] is False and body["statusCode"] == 503
    response = await cluster.http.post(f"{P}/invoke", json=invoke, headers=headers)
    assert response.status_code == 503 and response.json()["reason"] == "circuit_open"
    assert response.json()["provider"] == "flaky" and response.headers["retry-after"] in ("1", "2")
    name = f"integration.{org}.flaky"
    status = (await cluster.http.get(f"{P}/circuit-breaker", headers=headers)).json()["status"]
    assert status[name]["state"] == "open" and status[name]["org"] == org and status[name]["provider"] == "flaky"
    other = (await cluster.http.get(f"{P}/circuit-breaker", headers={"X-Org-Id": "someone-else"})).json()
    assert name not in other["status"]                       # another org does not see it
    assert (await cluster.http.post(f"{P}/execute", json=chat(), headers=headers)).status_code == 200  # providers fine
    # a 4xx answer is the upstream working: it never counts
    await cluster.a.services.resilience.breakers.reset(name)
    await wait_for(lambda: cluster.b.services.resilience.breakers.circuit(name) is None, 1.0)
    for _ in range(4):
        body = (await cluster.http.post(f"{P}/invoke", json={**invoke, "params": {"codes": "404"}},
                                        headers=headers)).json()
        assert body["statusCode"] == 404
    assert cluster.a.services.resilience.breakers.circuit(name) is None


async def test_abandoned_streams_do_not_count(cluster, llmock):
    llmock.scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 5, "times": None})
    abandoned = cluster.handled[("a", 499)] + cluster.handled[("b", 499)]
    for _ in range(4):
        inbox = cluster.nc.new_inbox()
        sub = await cluster.nc.subscribe(inbox)
        await cluster.nc.publish("integrations.v1.execute.stream", orjson.dumps(chat()), reply=inbox,
                                 headers={"x-api-key": CALLER_KEY})
        start = await sub.next_msg(timeout=5)
        assert start.headers["x-kind"] == "start"
        await sub.next_msg(timeout=5)                                     # the first chunk
        await cluster.nc.publish(start.headers["x-ack-to"], b"", headers={"x-kind": "cancel"})
        await sub.unsubscribe()
    # recorded as 499 client_disconnected (the requester is gone: nothing more is sent to it)
    await wait_for(lambda: cluster.handled[("a", 499)] + cluster.handled[("b", 499)] == abandoned + 4)
    await asyncio.sleep(0.1)
    assert all(w.services.resilience.breakers.circuit("openai") is None for w in cluster.workers)
