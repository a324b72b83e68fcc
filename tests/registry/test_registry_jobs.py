"""Invoke and register as jobs (docs/JOBS.md): the very handlers of integrations.v1.invoke and
integrations.v1.registry.register, run as the principal and org the job's grant names, against
httpbinx registered from its own OpenAPI document."""

import uuid

import orjson
import pytest

from tests.conftest import CALLER_KEY
from tests.jobs.helpers import ResultWatch, chat_request, get_grant, new_id, publish_job, wait_status
from tests.registry.conftest import as_org, must
from tests.registry.test_openapi_invoke import register_httpbin
from tests.registry.test_registry_rules import tiny


@pytest.fixture
async def results(nc):
    watch = await ResultWatch().open(nc)
    yield watch
    await watch.close()


async def submit(http, jobs: list[dict], headers: dict) -> list[str]:
    response = await http.post("/api/integrations/jobs", json={"jobs": jobs}, headers=headers)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


def body_of(msg) -> dict:
    return orjson.loads(msg.data)


async def test_a_batch_mixes_execute_and_invoke_jobs(http, nc, org, httpbin, worker, results):
    await register_httpbin(http, org, httpbin)
    records = []

    async def observe(command, reply):
        records.append((command.request_id, command.record))

    worker.services.observers.append(observe)
    try:
        ids = await submit(http, [
            {"request": chat_request("mixed batch")},
            {"kind": "invoke", "request": {"operation": "integrations.httpbin.anything.anything.post",
                                           "params": {"q": "job"}, "body": {"hello": "job"}}},
            {"kind": "invoke", "request": {"operation": "httpbin.status.code.status.codes.get",
                                           "params": {"codes": "418"}}},
            {"kind": "invoke", "request": {"operation": "httpbin.nope.nothing"}},
        ], as_org(org))
        got = await results.wait_for(ids)
    finally:
        worker.services.observers.remove(observe)
    assert ids[0].startswith("req_") and all(i.startswith("inv_") for i in ids[1:])
    execute, echo, teapot, missing = (got[i] for i in ids)
    assert execute.headers["x-job-kind"] == "execute" and execute.headers["x-status"] == "200"
    assert body_of(execute)["data"]["content"]

    assert echo.headers["x-job-kind"] == "invoke" and echo.headers["x-status"] == "200"
    reply = body_of(echo)
    assert reply["success"] is True and reply["statusCode"] == 200 and reply["requestId"] == ids[1]
    assert reply["operation"] == "integrations.httpbin.anything.anything.post" and reply["integration"] == "httpbin"
    echoed = reply["data"]
    assert echoed["method"] == "POST" and echoed["args"] == {"q": "job"}
    assert orjson.loads(echoed["data"]) == {"hello": "job"}
    assert not {"x-job-grant", "x-request-id", "x-org-id", "x-api-key"} & set(echoed["headers"])

    # an upstream error is a successful invoke (as for the twin); a gateway refusal fails the job
    assert teapot.headers["x-job-status"] == "succeeded" and body_of(teapot)["statusCode"] == 418
    assert missing.headers["x-status"] == "404" and missing.headers["x-job-status"] == "failed"
    assert body_of(missing)["reason"] == "operation_not_found" and body_of(missing)["requestId"] == ids[3]

    observed = {request_id: record for request_id, record in records if request_id in ids}
    assert observed[ids[0]].kind == "execute" and observed[ids[1]].kind == "invoke"
    assert observed[ids[1]].integration == "httpbin" and observed[ids[1]].org == org
    view = await wait_status(nc, ids[1], headers={"x-api-key": CALLER_KEY, "x-org-id": org})
    assert view["kind"] == "invoke" and view["result"]["data"]["args"] == {"q": "job"}


async def test_an_invoke_job_returns_what_the_twin_returns_also_when_published_directly(http, nc, org, httpbin,
                                                                                       results):
    await register_httpbin(http, org, httpbin)
    headers = {"x-api-key": CALLER_KEY, "x-org-id": org}
    request = {"operation": "httpbin.get_get_get", "params": {"x": "1"}}
    twin = await nc.request("integrations.v1.invoke", orjson.dumps(request), timeout=10, headers=headers)
    submitted = await nc.request("integrations.v1.jobs.submit", orjson.dumps([{"kind": "invoke",
                                                                               "request": request}]),
                                 timeout=10, headers=headers)
    assert submitted.headers["x-status"] == "202", submitted.data
    by_submit = body_of(submitted)["jobs"][0]["id"]
    grant = await get_grant(nc, headers)
    assert grant["org"] == org
    direct = new_id()
    await publish_job(nc.jetstream(), grant, direct, request, kind="invoke")
    got = await results.wait_for([by_submit, direct])
    twin_body = body_of(twin)
    for job_id, msg in got.items():
        job_body = body_of(msg)
        assert msg.headers["x-status"] == twin.headers["x-status"] == "200"
        assert job_body["requestId"] == job_id
        for body in (twin_body, job_body):
            body.pop("requestId", None), body.pop("durationMs", None)
        assert job_body == twin_body


async def test_register_jobs_run_with_the_registrys_rules_for_the_jobs_principal(http, nc, org, httpbin, admin_key,
                                                                                 acme_key, results):
    suffix = uuid.uuid4().hex[:8]
    # a plain registration: the entry is the submitting principal's, in its org
    [job] = await submit(http, [{"kind": "register", "request": tiny("jobbed", httpbin.url)}], as_org(org))
    msg = (await results.wait_for([job]))[job]
    assert job.startswith("reg_") and msg.headers["x-job-kind"] == "register" and msg.headers["x-status"] == "200"
    integration = body_of(msg)["integration"]
    assert body_of(msg)["created"] is True and integration["version"] == 1
    assert integration["org"] == org and integration["createdBy"] == "config-key-1"
    assert must(await http.get("/api/integrations/registry/jobbed", headers=as_org(org)))["integration"][
        "version"] == 1
    response = await http.post("/api/integrations/invoke", json={"operation": "jobbed.getItem",
                                                                 "params": {"id": "1"}}, headers=as_org(org))
    assert response.status_code == 200, response.text

    # global entries need the admin entitlement, which the grant carries (or not)
    global_key = f"jobs-global-{suffix}"
    [member] = await submit(http, [{"kind": "register", "request": tiny(global_key, httpbin.url, scope="global")}],
                            as_org(org))
    [admin] = await submit(http, [{"kind": "register",
                                   "request": tiny(f"{global_key}-ok", httpbin.url, scope="global")}],
                           as_org(org, admin_key))
    got = await results.wait_for([member, admin])
    refused, accepted = got[member], got[admin]
    assert refused.headers["x-status"] == "403" and body_of(refused)["reason"] == "admin_required"
    assert refused.headers["x-job-status"] == "failed"
    assert accepted.headers["x-status"] == "200" and body_of(accepted)["integration"]["scope"] == "global"
    must(await http.delete(f"/api/integrations/registry/{global_key}-ok", headers=as_org(org, admin_key)))

    # updates: only the creator (or an admin) may change an entry, decided for the job's principal
    owned = f"acme-job-{suffix}"
    [created] = await submit(http, [{"kind": "register", "request": tiny(owned, httpbin.url)}],
                             as_org("acme", acme_key))
    assert (await results.wait_for([created]))[created].headers["x-status"] == "200"
    [stranger] = await submit(http, [{"kind": "register", "request": tiny(owned, httpbin.url, version=1)}],
                              as_org("acme"))
    [creator] = await submit(http, [{"kind": "register", "request": tiny(owned, httpbin.url, version=1,
                                                                         description="by job")}],
                             as_org("acme", acme_key))
    got = await results.wait_for([stranger, creator])
    assert got[stranger].headers["x-status"] == "403" and body_of(got[stranger])["reason"] == "not_owner"
    updated = body_of(got[creator])
    assert updated["created"] is False and updated["integration"]["version"] == 2
    assert updated["integration"]["description"] == "by job"
    must(await http.delete(f"/api/integrations/registry/{owned}", headers=as_org("acme", acme_key)))

    # a malformed registration queues nothing
    response = await http.post("/api/integrations/jobs", json=[{"kind": "register", "request": {"type": "openapi"}}],
                               headers=as_org(org))
    assert response.status_code == 400 and "Invalid jobs[0].request: key" in response.json()["error"]
