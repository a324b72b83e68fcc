"""Jobs go through the same limits and circuit breakers as their request-reply twins (they run
the same handler), and a deferred job has no caller deadline: the submitter's X-Timeout-Ms /
x-deadline bounds the submission, not the job (docs/RESILIENCE.md, docs/JOBS.md)."""

import time

from tests.conftest import CALLER_KEY
from tests.jobs.helpers import get_grant, new_id, publish_job, wait_status
from tests.resilience.conftest import P, chat
from tests.resilience.test_breaker import open_circuit_on
from tests.streaming.helpers import wait_for


async def submit(cluster, request: dict, headers: dict | None = None) -> str:
    job_id = new_id()
    response = await cluster.http.post(f"{P}/jobs", json=[{"id": job_id, "request": request}], headers=headers or {})
    assert response.status_code == 202, response.text
    return job_id


async def test_a_job_meeting_an_open_circuit_waits_for_it_to_close(cluster, llmock):
    await open_circuit_on(cluster, cluster.a, llmock)
    await wait_for(lambda: cluster.b.services.resilience.breakers.snapshot("openai").state == "open", 1.0)
    llmock.clear_scenario()                                              # the upstream recovers
    started = time.monotonic()
    job_id = await submit(cluster, chat(fallbacks=[]))
    view = await wait_status(cluster.nc, job_id, within_s=20)
    # refused while open (not failed: handed back with the circuit's Retry-After), then run by the
    # half-open probe once the cool-down passed, which closes the circuit again
    assert view["status"] == "succeeded" and view["resultStatus"] == 200, view
    assert view["attempts"] >= 2 and time.monotonic() - started >= 1.0
    assert len(llmock.requests()) == 4                    # the three that opened the circuit, then the job


async def test_a_job_over_the_org_limit_waits_for_capacity(cluster, llmock, org):
    await cluster.set_policy(org, {"rateLimits": {"orgRpm": 1}})
    headers = {"X-Org-Id": org}
    assert (await cluster.http.post(f"{P}/execute", json=chat(), headers=headers)).status_code == 200
    job_id = await submit(cluster, chat(), headers)
    status_headers = {"x-api-key": CALLER_KEY, "x-org-id": org}
    # refused by the limit: back to queued with no result, and no upstream call
    view = await wait_status(cluster.nc, job_id, headers=status_headers, statuses=("queued",), min_attempts=2)
    assert view["status"] == "queued" and "result" not in view, view
    assert len(llmock.requests()) == 1
    await cluster.set_policy(org, {"rateLimits": {"orgRpm": 100}})     # capacity comes back
    view = await wait_status(cluster.nc, job_id, headers=status_headers, within_s=20)
    assert view["status"] == "succeeded" and view["resultStatus"] == 200, view
    assert len(llmock.requests()) == 2


async def test_a_job_still_refused_when_it_grows_too_old_fails_with_the_refusal(cluster, llmock, org):
    settings = cluster.a.services.settings          # both workers share it; the runner reads it live
    assert settings is cluster.b.services.settings
    await cluster.set_policy(org, {"rateLimits": {"orgRpm": 1}})
    headers = {"X-Org-Id": org}
    assert (await cluster.http.post(f"{P}/execute", json=chat(), headers=headers)).status_code == 200
    saved = settings.job_max_age_s
    settings.job_max_age_s = 1.0
    try:
        job_id = await submit(cluster, chat(), headers)
        view = await wait_status(cluster.nc, job_id, headers={"x-api-key": CALLER_KEY, "x-org-id": org}, within_s=20)
    finally:
        settings.job_max_age_s = saved
    assert view["status"] == "failed" and view["resultStatus"] == 429, view
    assert view["result"]["reason"] == "rate_limit_org_requests" and view["result"]["category"] == "rate_limit"
    assert len(llmock.requests()) == 1                    # the job never went upstream
    stored = await cluster.nc.jetstream().get_last_msg("INTEGRATIONS_RESULTS", f"integrations.v1.results.{job_id}",
                                                       direct=True)
    assert stored.headers["x-status"] == "429" and stored.headers["x-job-status"] == "failed"
    assert int(stored.headers["retry-after"]) >= 1 and stored.headers["x-ratelimit-remaining"] == "0"


async def test_a_job_does_not_inherit_its_submitters_deadline(cluster, llmock):
    llmock.scenario({"type": "delay", "seconds": 0.6, "times": None})
    # over HTTP: the submission has 300 ms, the job takes longer and still succeeds
    started = time.monotonic()
    job_id = await submit(cluster, chat(), {"X-Timeout-Ms": "300"})
    assert time.monotonic() - started < 0.6
    view = await wait_status(cluster.nc, job_id)
    assert view["status"] == "succeeded" and view["resultStatus"] == 200, view

    # on the bus: a publisher's x-deadline (already past) and x-timeout-ms are not the job's
    grant = await get_grant(cluster.nc)
    js = cluster.nc.jetstream()
    direct = new_id()
    await publish_job(js, grant, direct, chat(), extra={"x-deadline": str(int(time.time() * 1000) - 1000),
                                                        "x-timeout-ms": "1"})
    view = await wait_status(cluster.nc, direct)
    assert view["status"] == "succeeded" and view["resultStatus"] == 200, view

    # the request's own `timeout` does apply, counted from when the job starts
    own = new_id()
    await publish_job(js, grant, own, chat(timeout=200))
    view = await wait_status(cluster.nc, own)
    assert view["status"] == "failed" and view["resultStatus"] == 504, view
    assert view["result"]["reason"] == "deadline_exceeded" and view["result"]["category"] == "timeout"
