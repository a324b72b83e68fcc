"""Cancelling queued jobs, on a NATS server of its own: the first worker only accepts jobs
(INTEGRATIONS_JOB_CONCURRENCY=0), so they stay queued until a consuming worker starts."""

import tempfile
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from api.app import create_app
from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from tests.conftest import CALLER_KEY
from tests.jobs.helpers import ResultWatch, chat_request, new_id, until, wait_status


@pytest.fixture
async def private_bus(settings, api_settings):
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="jobs-cancel-")) / "js")
    url = server.start()
    submitter = build_app(settings.model_copy(update={"nats_url": url, "job_concurrency": 0}))
    await submitter.start()
    app = create_app(api_settings.model_copy(update={"nats_url": url}))
    nc = await nats.connect(url)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                         headers={"X-API-Key": CALLER_KEY}, timeout=30) as http:
                yield url, http, nc
    finally:
        await nc.close()
        await submitter.stop()
        server.stop()


async def test_a_queued_job_can_be_cancelled_and_never_runs(private_bus, settings, llmock):
    url, http, nc = private_bus
    watch = await ResultWatch().open(nc)
    keep, drop = new_id(), new_id()
    response = await http.post("/api/integrations/jobs", json=[{"id": keep, "request": chat_request("keep")},
                                                                {"id": drop, "request": chat_request("drop")}])
    assert response.status_code == 202
    assert (await http.get(f"/api/integrations/jobs/{drop}")).json()["status"] == "queued"

    response = await http.delete(f"/api/integrations/jobs/{drop}")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "cancelled" and view["resultStatus"] == 409 and view["result"]["reason"] == "job_cancelled"
    msg = (await watch.wait_for([drop]))[drop]
    assert msg.headers["x-status"] == "409" and msg.headers["x-job-status"] == "cancelled"
    assert (await http.delete(f"/api/integrations/jobs/{drop}")).status_code == 200      # idempotent

    consumer = build_app(settings.model_copy(update={"nats_url": url, "job_concurrency": 2}))
    await consumer.start()
    try:
        await watch.wait_for([keep])
        js = nc.jetstream()

        async def queue_empty() -> bool:     # both messages consumed: the cancelled one acknowledged unrun
            return (await js.stream_info("INTEGRATIONS_JOBS")).state.messages == 0

        await until(queue_empty, within_s=5)
    finally:
        await consumer.stop()
    assert [r["body"]["messages"][-1]["content"] for r in llmock.requests()] == ["keep"]
    assert len(watch.seen[drop]) == 1
    response = await http.delete(f"/api/integrations/jobs/{keep}")
    assert response.status_code == 409 and response.json()["reason"] == "job_not_cancellable"
    assert "succeeded" in response.json()["error"]
    response = await http.delete(f"/api/integrations/jobs/{new_id()}")
    assert response.status_code == 404
    await watch.close()


async def test_a_running_job_cannot_be_cancelled(http, nc, llmock):
    llmock.scenario({"type": "delay", "seconds": 1.0})
    job_id = new_id()
    await http.post("/api/integrations/jobs", json=[{"id": job_id, "request": chat_request("slow")}])
    await wait_status(nc, job_id, statuses=("running",))
    response = await http.delete(f"/api/integrations/jobs/{job_id}")
    assert response.status_code == 409 and response.json()["reason"] == "job_not_cancellable"
    view = await wait_status(nc, job_id)
    assert view["status"] == "succeeded"
    msg = await nc.request("integrations.v1.jobs.cancel", orjson.dumps({"id": job_id}), timeout=5,
                           headers={"x-api-key": CALLER_KEY})
    assert msg.headers["x-status"] == "409"
