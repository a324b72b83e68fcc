"""Changed job settings reach the existing JetStream objects at the next worker start."""

import tempfile
from pathlib import Path

import nats

from contracts import subjects
from service.embedded_nats import EmbeddedNats
from service.jobs.store import JobSettings, JobStore


async def test_ack_wait_and_status_ttl_are_updated_on_the_next_start():
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="jobstore-")) / "js")
    nc = await nats.connect(server.start())
    try:
        await JobStore(nc, JobSettings(max_age_s=3600, results_ttl_s=7200, duplicate_window_s=60,
                                       ack_wait_s=30)).open()
        await JobStore(nc, JobSettings(max_age_s=3600, results_ttl_s=9000, duplicate_window_s=60,
                                       ack_wait_s=12)).open()
        js = nc.jetstream()
        consumer = await js.consumer_info(subjects.JOBS_STREAM, subjects.JOBS_CONSUMER)
        assert consumer.config.ack_wait == 12
        assert (await js.stream_info(f"KV_{subjects.JOBS_BUCKET}")).config.max_age == 9000
    finally:
        await nc.close()
        server.stop()
