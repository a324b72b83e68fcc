"""The runner's decisions for redelivered and duplicated job messages, against a real JetStream
store on a NATS server of its own (the handler it runs is a counter: the decisions are under test)."""

import tempfile
import time
from pathlib import Path

import nats
import orjson
import pytest

from contracts import headers as h
from service.auth.access import Caller
from service.auth.principal import Principal
from service.commands import Command, Reply
from service.embedded_nats import EmbeddedNats
from service.jobs.grants import JobSigner
from service.jobs.kinds import JobHandler
from service.jobs.records import JobRecord
from service.jobs.runner import IncomingJob, JobRunner
from service.jobs.store import JobSettings, JobStore
from tests.jobs.helpers import chat_request, new_id

CALLER = Caller(Principal(id="svc-1", type="service", organizations=("o1",)), "o1")
BODY = orjson.dumps(chat_request())


@pytest.fixture(scope="module")
def nats_server():
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="jobs-runner-")) / "js")
    yield server.start()
    server.stop()


@pytest.fixture
async def rig(nats_server):
    nc = await nats.connect(nats_server)
    store = JobStore(nc, JobSettings(max_age_s=60, results_ttl_s=60, duplicate_window_s=60, ack_wait_s=5))
    await store.open()
    signer = JobSigner(b"k" * 32)
    runs: list[Command] = []

    async def handler(command: Command) -> Reply:
        return command.json_reply(200, {"success": True, "caller": command.headers.get(h.ORG_ID)})

    async def execute(handler, command):
        runs.append(command)
        return await handler(command)

    from contracts.execute import ExecuteRequest
    runner = JobRunner(store=store, signer=signer, execute=execute, max_attempts=3, worker_id="test",
                       handlers={"execute": JobHandler(handler, "req", ExecuteRequest)})
    grant = signer.mint(CALLER, 60)

    def job(job_id: str, seq: int, deliveries: int = 1) -> IncomingJob:
        headers = {h.NATS_MSG_ID: job_id, h.JOB_GRANT: grant.token,
                   h.JOB_SIGNATURE: signer.sign(grant, job_id, "execute", None, BODY)}
        return IncomingJob("execute", headers, BODY, seq=seq, deliveries=deliveries, published_at=time.time())

    yield store, runner, job, runs
    await nc.close()


async def test_first_delivery_runs_as_the_grants_caller(rig):
    store, runner, job, runs = rig
    job_id = new_id()
    await runner.run(job(job_id, seq=10))
    [command] = runs
    assert command.request_id == job_id and command.headers[h.ORG_ID] == "o1"
    record, _ = await store.get(job_id)
    assert record.status == "succeeded" and record.org == "o1" and record.principal_id == "svc-1"
    assert record.seq == 10 and record.attempts == 1 and record.result_status == 200
    assert (await store.result(job_id)).status == 200


async def test_a_second_message_with_the_same_id_is_skipped_while_the_first_runs(rig):
    store, runner, job, runs = rig
    job_id = new_id()
    record = JobRecord.new(job_id, "execute", "running", "o1", "svc-1", None)
    record.seq = 10
    await store.create(record)
    await runner.run(job(job_id, seq=11))
    assert runs == [] and (await store.get(job_id))[0].status == "running"


async def test_a_redelivery_after_a_lost_worker_runs_again(rig):
    store, runner, job, runs = rig
    job_id = new_id()
    record = JobRecord.new(job_id, "execute", "running", "o1", "svc-1", None)
    record.seq, record.attempts = 10, 1
    await store.create(record)
    await runner.run(job(job_id, seq=10, deliveries=2))
    assert len(runs) == 1
    record, _ = await store.get(job_id)
    assert record.status == "succeeded" and record.attempts == 2


async def test_a_redelivery_after_the_result_was_published_does_not_run_again(rig):
    store, runner, job, runs = rig
    job_id = new_id()
    record = JobRecord.new(job_id, "execute", "running", "o1", "svc-1", None)
    record.seq = 10
    await store.create(record)
    record.status = "succeeded"             # the lost worker published its result, then died
    await store.publish_result(record, 200, b'{"success":true}', {})
    await runner.run(job(job_id, seq=10, deliveries=2))
    assert runs == []
    record, _ = await store.get(job_id)
    assert record.status == "succeeded" and record.result_status == 200


async def test_a_job_whose_workers_keep_dying_is_given_up(rig):
    store, runner, job, runs = rig
    job_id = new_id()
    record = JobRecord.new(job_id, "execute", "running", "o1", "svc-1", None)
    record.seq = 10
    await store.create(record)
    await runner.run(job(job_id, seq=10, deliveries=4))
    assert runs == []
    record, _ = await store.get(job_id)
    result = await store.result(job_id)
    assert record.status == "failed" and result.status == 500
    assert orjson.loads(result.body)["reason"] == "job_attempts_exhausted"


async def test_finished_and_cancelled_jobs_are_not_run(rig):
    store, runner, job, runs = rig
    for status in ("succeeded", "failed", "cancelled"):
        job_id = new_id()
        await store.create(JobRecord.new(job_id, "execute", status, "o1", "svc-1", None))
        await runner.run(job(job_id, seq=10))
    assert runs == []


async def test_results_above_max_payload_go_through_the_object_store(rig):
    store, _, _, _ = rig
    job_id = new_id()
    big = b'{"success":true,"data":"' + b"x" * (2 * 1024 * 1024) + b'"}'
    record = JobRecord.new(job_id, "execute", "succeeded", "o1", "svc-1", None)
    await store.publish_result(record, 200, big, {})
    stored = await store.js.get_last_msg("INTEGRATIONS_RESULTS", f"integrations.v1.results.{job_id}", direct=True)
    assert not stored.data and stored.headers[h.RESULT_REF] == job_id
    assert (await store.result(job_id)).body == big
