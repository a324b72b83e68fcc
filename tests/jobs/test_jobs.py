"""Jobs against the session's private NATS, its worker and llmock: batches over HTTP, results as
events for plain nats-py clients, idempotency, grants, org isolation, the same pipeline as the
request-reply twin."""

import asyncio
from collections import Counter

import orjson
import pytest

from contracts.execute import ExecuteSuccess
from contracts.jobs import JobsAccepted, JobView
from service.jobs.records import JobRecord
from tests.conftest import CALLER_KEY
from tests.jobs.helpers import (
    ResultWatch,
    chat_request,
    get_grant,
    job_status,
    new_id,
    publish_job,
    sign,
    until,
    wait_status,
)


@pytest.fixture
async def results(nc):
    watch = await ResultWatch().open(nc)
    yield watch
    await watch.close()


def prompts_sent(llmock) -> Counter:
    return Counter(r["body"]["messages"][-1]["content"] for r in llmock.requests()
                   if r["path"] == "/v1/chat/completions")


async def test_a_batch_of_50_executes_completes_with_50_results(http, nc, llmock, results):
    batch = {"jobs": [{"request": chat_request(f"job {i}")} for i in range(50)]}
    response = await http.post("/api/integrations/jobs", json=batch)
    assert response.status_code == 202, response.text
    accepted = JobsAccepted.model_validate(response.json())
    ids = [job.id for job in accepted.jobs]
    assert len(set(ids)) == 50 and all(job.status == "queued" and job.kind == "execute" for job in accepted.jobs)
    assert all(i.startswith("req_") for i in ids)

    got = await results.wait_for(ids)                       # a plain nats-py subscriber
    for job_id, msg in got.items():
        assert msg.headers["x-status"] == "200" and msg.headers["x-job-status"] == "succeeded"
        assert msg.headers["x-request-id"] == job_id
        body = ExecuteSuccess.model_validate_json(msg.data)
        assert body.requestId == job_id
    assert all(len(results.seen[i]) == 1 for i in ids)
    assert prompts_sent(llmock) == Counter({f"job {i}": 1 for i in range(50)})

    polled = JobView.model_validate((await http.get(f"/api/integrations/jobs/{ids[7]}")).json())
    assert polled.status == "succeeded" and polled.resultStatus == 200 and polled.attempts == 1
    assert polled.result["requestId"] == ids[7] and polled.result["data"]["content"]
    assert polled.startedAt and polled.finishedAt and polled.resultSubject == f"integrations.v1.results.{ids[7]}"
    # the alias prefix serves the same routes
    assert (await http.get(f"/api/api/integrations/jobs/{ids[7]}")).json()["status"] == "succeeded"


async def test_a_job_returns_exactly_what_its_request_reply_twin_returns(http, nc, results):
    for request in (chat_request("twin", maxTokens=5),
                    {"provider": "acme-llm", "operation": "chat.completions", "params": {"model": "x"}},
                    {"provider": "openai", "operation": "embeddings", "params": {"model": "text-embedding-3-small",
                                                                                   "input": ["a", "b"]}}):
        twin = await nc.request("integrations.v1.execute", orjson.dumps(request), timeout=10,
                                headers={"x-api-key": CALLER_KEY, "x-request-id": "twin-1"})
        job_id = new_id()
        response = await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": request}])
        assert response.status_code == 202, response.text
        msg = (await results.wait_for([job_id]))[job_id]
        assert msg.headers["x-status"] == twin.headers["x-status"]
        twin_body, job_body = orjson.loads(twin.data), orjson.loads(msg.data)
        for body in (twin_body, job_body):       # what differs between two calls anyway
            body.pop("requestId"), body.pop("durationMs")
            body.get("data", {}).pop("metadata", None)
        assert job_body == twin_body
    assert msg.headers["x-job-status"] == "succeeded"
    view = await wait_status(nc, job_id)
    assert view["status"] == "succeeded" and len(view["result"]["data"]["embeddings"]) == 2


async def test_failed_jobs_carry_the_error_envelope(http, nc, results, llmock):
    llmock.scenario({"type": "fail", "status": 400, "times": 1})
    job_id = new_id()
    await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request("rejected")}])
    msg = (await results.wait_for([job_id]))[job_id]
    body = orjson.loads(msg.data)
    assert msg.headers["x-status"] == "400" and msg.headers["x-job-status"] == "failed"
    assert body["success"] is False and body["category"] == "validation" and body["requestId"] == job_id
    view = await wait_status(nc, job_id)
    assert view["status"] == "failed" and view["resultStatus"] == 400 and view["result"]["category"] == "validation"


async def test_a_rate_limited_job_is_run_again_later_not_failed(http, nc, results, llmock):
    llmock.scenario({"type": "fail", "status": 429, "retry_after": 1, "times": 1})
    job_id = new_id()
    await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request("limited")}])
    msg = (await results.wait_for([job_id]))[job_id]
    assert msg.headers["x-status"] == "200" and msg.headers["x-job-status"] == "succeeded"
    view = await wait_status(nc, job_id)
    assert view["attempts"] == 2 and len(llmock.requests()) == 2     # refused once (429), then served


async def test_plain_nats_client_publishes_a_job_and_reads_its_result(nc, results, llmock):
    grant = await get_grant(nc)
    assert grant["org"] == "default" and grant["principalId"] and grant["expiresAt"]
    js = nc.jetstream()
    job_id = new_id()
    own = await nc.subscribe(f"integrations.v1.results.{job_id}")
    ack = await publish_job(js, grant, job_id, chat_request("fire and forget"))
    assert ack.stream == "INTEGRATIONS_JOBS" and not ack.duplicate
    msg = await own.next_msg(timeout=10)
    assert msg.headers["x-status"] == "200" and orjson.loads(msg.data)["requestId"] == job_id
    # later, by id: the last message of the subject in the results stream (direct get)
    stored = await js.get_last_msg("INTEGRATIONS_RESULTS", f"integrations.v1.results.{job_id}", direct=True)
    assert stored.data == msg.data and stored.headers["x-status"] == "200"
    view = await wait_status(nc, job_id)
    assert view["status"] == "succeeded" and view["attempts"] == 1


async def test_reply_to_subject_receives_the_result_too(http, nc):
    job_id, inbox = new_id(), f"orchestrator.results.{new_id()}"
    sub = await nc.subscribe(inbox)
    response = await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request("hi"),
                                                                "replyTo": inbox}])
    assert response.json()["jobs"][0]["replyTo"] == inbox
    msg = await sub.next_msg(timeout=10)
    assert msg.headers["x-status"] == "200" and msg.headers["x-request-id"] == job_id
    # replyTo inside the gateway's namespace could forge another job's result: refused
    for bad in (f"integrations.v1.results.{new_id()}", "$JS.API.STREAM.DELETE.X", "a.*", "has space"):
        response = await http.post("/api/integrations/jobs", json=[{"request": chat_request(), "replyTo": bad}])
        assert response.status_code == 400 and response.json()["reason"] == "invalid_request", bad


async def test_a_duplicate_publish_with_the_same_idempotency_key_runs_once(nc, results, llmock):
    grant = await get_grant(nc)
    js = nc.jetstream()
    job_id = new_id()
    first = await publish_job(js, grant, job_id, chat_request("once"))
    again = await publish_job(js, grant, job_id, chat_request("once"))
    assert not first.duplicate and again.duplicate          # JetStream's duplicate window
    await results.wait_for([job_id])
    # Past the duplicate window (a message without Nats-Msg-Id is not de-duplicated by the stream):
    # the consumer's status record still refuses to run a finished job again.
    body = orjson.dumps(chat_request("once"))
    await js.publish("integrations.v1.jobs.execute", body, headers={
        "x-request-id": job_id, "x-job-grant": grant["grant"],
        "x-job-signature": sign(grant, job_id, "execute", body)})
    await asyncio.sleep(0.5)
    info = await js.stream_info("INTEGRATIONS_JOBS")
    assert info.state.messages == 0                         # consumed and acknowledged
    assert prompts_sent(llmock)["once"] == 1 and len(results.seen[job_id]) == 1
    # Over HTTP: submitting the same id again answers the known job and queues nothing.
    http_id = new_id()
    for attempt in range(2):
        accepted = await nc.request("integrations.v1.jobs.submit", orjson.dumps(
            [{"id": http_id, "request": chat_request("http once")}]), timeout=5, headers={"x-api-key": CALLER_KEY})
        job = orjson.loads(accepted.data)["jobs"][0]
        assert accepted.headers["x-status"] == "202" and job.get("duplicate", False) == (attempt == 1)
        await results.wait_for([http_id])
    assert prompts_sent(llmock)["http once"] == 1


async def test_jobs_without_a_valid_grant_do_not_run(nc, results, llmock):
    grant = await get_grant(nc)
    js = nc.jetstream()
    tampered, unsigned, keyed, other_grant = new_id(), new_id(), new_id(), new_id()
    await publish_job(js, grant, tampered, chat_request("changed"), signed_body=orjson.dumps(chat_request("x")))
    await js.publish("integrations.v1.jobs.execute", orjson.dumps(chat_request("no grant")),
                     headers={"Nats-Msg-Id": unsigned})
    # a caller credential in the job does not count (and must never be sent there)
    await js.publish("integrations.v1.jobs.execute", orjson.dumps(chat_request("api key")),
                     headers={"Nats-Msg-Id": keyed, "x-api-key": CALLER_KEY})
    forged = {**grant, "grant": grant["grant"][:-4] + "AAAA"}
    await publish_job(js, forged, other_grant, chat_request("forged"))
    got = await results.wait_for([tampered, unsigned, keyed, other_grant])
    for msg in got.values():
        body = orjson.loads(msg.data)
        assert msg.headers["x-status"] == "401" and body["reason"] == "job_grant_invalid", body
    assert prompts_sent(llmock) == Counter()
    # refused jobs belong to no organization: nobody can read their status
    status, _ = await job_status(nc, tampered)
    assert status == 404


async def test_expired_grant_is_refused(nc, results, worker):
    signer = worker.services.job_signer
    from service.auth.access import Caller
    from service.auth.principal import Principal

    stale = signer.mint(Caller(Principal(id="p", type="api_key", organizations=None), "default"), ttl_s=-60)
    grant = {"grant": stale.token, "jobKey": stale.job_key.hex()}
    job_id = new_id()
    await publish_job(nc.jetstream(), grant, job_id, chat_request())
    body = orjson.loads((await results.wait_for([job_id]))[job_id].data)
    assert body["reason"] == "job_grant_invalid" and "expired" in body["error"]


async def test_job_status_is_scoped_to_the_organization(http, nc, acme_key, results):
    acme = {"x-api-key": acme_key}
    response = await http.post("/api/integrations/jobs", json=[{"request": chat_request("acme")}], headers=acme)
    job_id = response.json()["jobs"][0]["id"]
    await results.wait_for([job_id])
    assert (await http.get(f"/api/integrations/jobs/{job_id}", headers=acme)).json()["status"] == "succeeded"
    for headers in ({}, {"x-org-id": "other"}):             # default org, another org
        response = await http.get(f"/api/integrations/jobs/{job_id}", headers=headers)
        assert response.status_code == 404 and response.json()["reason"] == "not_found"
        response = await http.delete(f"/api/integrations/jobs/{job_id}", headers=headers)
        assert response.status_code == 404
    assert (await http.get(f"/api/integrations/jobs/{job_id}", headers={"x-org-id": "acme"})).status_code == 200
    # ids are global: another organization cannot take over an id in use
    fresh = new_id()
    response = await http.post("/api/integrations/jobs", json=[{"id": fresh, "request": chat_request()},
                                                                {"id": job_id, "request": chat_request()}])
    assert response.status_code == 409 and response.json()["reason"] == "job_id_conflict"
    assert job_id in response.json()["error"] and fresh not in response.json()["error"]
    assert (await http.get(f"/api/integrations/jobs/{fresh}")).status_code == 404      # rolled back
    response = await http.post("/api/integrations/jobs", json=[{"id": fresh, "request": chat_request("again")}])
    assert response.status_code == 202 and "duplicate" not in response.json()["jobs"][0]
    await results.wait_for([fresh])
    # nor can a grant of another organization run a message with that id
    grant = await get_grant(nc)
    await publish_job(nc.jetstream(), grant, job_id, chat_request("hijack"))
    await asyncio.sleep(0.3)
    assert len(results.seen[job_id]) == 1
    # and unauthenticated readers get 401
    response = await http.get(f"/api/integrations/jobs/{job_id}", headers={"x-api-key": "wrong"})
    assert response.status_code == 401


async def test_bad_batches_queue_nothing(http, nc, worker, monkeypatch):
    good = new_id()
    # Every kind has a handler now; a gateway without one (a kind switched off) refuses it up front.
    monkeypatch.delitem(worker.services.job_handlers, "register")
    cases = [
        ([{"id": good, "request": chat_request()}, {"request": {"provider": "openai"}}], 400, "invalid_request",
         "jobs[1].request"),
        ([{"id": good, "request": chat_request()}, {"kind": "invoke", "request": {}}], 400, "invalid_request",
         "Invalid jobs[1].request: operation"),
        ([{"id": good, "kind": "register", "request": {}}], 400, "job_kind_unavailable",
         "jobs[0]: Jobs of kind 'register'"),
        ([{"id": good, "kind": "register", "request": {}}], 400, "job_kind_unavailable",
         "available: execute, invoke"),
        ([{"id": good, "request": chat_request()}, {"id": good, "request": chat_request()}], 400, "invalid_request",
         "unique"),
        ([], 400, "invalid_request", "jobs"),
        ([{"id": "has.dot", "request": chat_request()}], 400, "invalid_request", "jobs.0.id"),
        ({"jobs": [{"request": chat_request(), "extra": 1}]}, 400, "invalid_request", "extra"),
        ([{"request": chat_request()}] * 1001, 413, "batch_too_large", "at most 1000"),
    ]
    for body, status, reason, fragment in cases:
        response = await http.post("/api/integrations/jobs", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["reason"] == reason and fragment in response.json()["error"], response.json()
    assert (await http.get(f"/api/integrations/jobs/{good}")).status_code == 404
    response = await http.post("/api/integrations/jobs", content=b"{not json")
    assert response.status_code == 400 and response.json()["reason"] == "invalid_json"
    response = await http.get("/api/integrations/jobs/bad.id")
    assert response.status_code == 400


async def test_a_job_kind_without_a_handler_fails_cleanly_on_the_bus(nc, results, worker, monkeypatch):
    monkeypatch.delitem(worker.services.job_handlers, "invoke")     # the runner reads the same live mapping
    grant = await get_grant(nc)
    job_id = new_id()
    await publish_job(nc.jetstream(), grant, job_id, {"integration": "x"}, kind="invoke")
    msg = (await results.wait_for([job_id]))[job_id]
    body = orjson.loads(msg.data)
    assert msg.headers["x-status"] == "400" and body["reason"] == "job_kind_unavailable"
    assert msg.headers["x-job-kind"] == "invoke"


async def test_jobs_are_observed_like_interactive_calls(http, worker, results):
    seen = []

    async def observe(command, reply):
        seen.append((command, reply))

    worker.services.observers.append(observe)
    try:
        job_id = new_id()
        await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request(maxTokens=5)}],
                        headers={"x-org-id": "org-9", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
        await results.wait_for([job_id])
    finally:
        worker.services.observers.remove(observe)
    [(command, reply)] = [(c, r) for c, r in seen if c.request_id == job_id]
    record = command.record
    assert reply.status == 200 and record.kind == "execute" and record.org == "org-9"
    assert record.principal_type == "api_key" and record.total_tokens > 0 and record.credential_source == "env"
    assert command.headers["traceparent"].startswith("00-aaaa") and "x-api-key" not in command.headers
    assert "x-job-grant" not in command.headers and command.headers["x-org-id"] == "org-9"


async def test_grant_requests(nc, acme_key):
    grant = await get_grant(nc, {"x-api-key": acme_key}, ttlSeconds=60)
    assert grant["org"] == "acme"
    msg = await nc.request("integrations.v1.jobs.grant", b"{}", timeout=5, headers={"x-api-key": "nope"})
    assert msg.headers["x-status"] == "401"
    msg = await nc.request("integrations.v1.jobs.grant", b'{"ttlSeconds": 0}', timeout=5,
                           headers={"x-api-key": CALLER_KEY})
    assert msg.headers["x-status"] == "400"


async def test_a_failing_observer_neither_fails_a_call_nor_redelivers_a_job(http, nc, worker, results, llmock):
    """The usage pipeline failing is logged: the request-reply call still answers 200 and the job
    succeeds once (before, the call became a 500 and the job was naked and run again)."""
    observed = []

    async def broken(command, reply):
        raise RuntimeError("usage sink down")

    async def after(command, reply):
        observed.append(command.request_id)

    worker.services.observers.extend([broken, after])
    try:
        twin = await nc.request("integrations.v1.execute", orjson.dumps(chat_request("observed twin")), timeout=10,
                                headers={"x-api-key": CALLER_KEY, "x-request-id": "observed-twin"})
        job_id = new_id()
        await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request("observed job")}])
        msg = (await results.wait_for([job_id]))[job_id]
        js = nc.jetstream()

        async def acknowledged() -> bool:
            return (await js.stream_info("INTEGRATIONS_JOBS")).state.messages == 0
        await until(acknowledged)
    finally:
        worker.services.observers.remove(broken)
        worker.services.observers.remove(after)
    assert twin.headers["x-status"] == "200" and orjson.loads(twin.data)["success"] is True
    assert msg.headers["x-status"] == "200" and msg.headers["x-job-status"] == "succeeded"
    view = await wait_status(nc, job_id)
    assert view["status"] == "succeeded" and view["attempts"] == 1
    assert prompts_sent(llmock)["observed job"] == 1 and len(results.seen[job_id]) == 1
    assert {"observed-twin", job_id} <= set(observed)      # later observers still ran


async def test_a_job_that_jetstream_dropped_unrun_reads_as_expired(http, worker, results, monkeypatch):
    """A record still `queued` past INTEGRATIONS_JOB_MAX_AGE_S: JetStream dropped its message
    unrun (no worker took it in time). The first read finishes it as failed / job_expired and
    publishes that result; a record within the max age stays queued."""
    response = await http.post("/api/integrations/jobs", json={"jobs": [{"request": chat_request("template")}]})
    template_id = response.json()["jobs"][0]["id"]
    await results.wait_for([template_id])
    store = worker.services.jobs._store()
    template, _ = await store.get(template_id)
    max_age_s = worker.services.jobs._max_age_s
    stale, fresh = new_id("stale"), new_id("fresh")
    for job_id, age_s in ((stale, max_age_s + 60), (fresh, max_age_s - 60)):
        record = JobRecord.new(job_id, "execute", "queued", template.org, template.principal_id, None)
        record.created_at -= age_s
        assert await store.create(record) is not None

    view = JobView.model_validate((await http.get(f"/api/integrations/jobs/{stale}")).json())
    assert view.status == "failed" and view.resultStatus == 504
    assert view.result["reason"] == "job_expired" and view.result["retryable"] is True
    got = await results.wait_for([stale])
    assert got[stale].headers["x-status"] == "504"
    assert (await http.get(f"/api/integrations/jobs/{stale}")).json()["status"] == "failed"   # stays so
    assert (await http.get(f"/api/integrations/jobs/{fresh}")).json()["status"] == "queued"
    cancel = await http.delete(f"/api/integrations/jobs/{fresh}")      # still cancellable
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
