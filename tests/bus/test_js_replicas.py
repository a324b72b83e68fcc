"""INTEGRATIONS_JS_REPLICAS on a single server: every asset is still created (one replica, with a
warning) and a worker keeps starting; the cluster side is tests/e2e/test_cluster.py."""

import logging
import tempfile
from pathlib import Path

import nats
from nats.js.api import KeyValueConfig

from contracts import subjects
from handlers.payloads import PayloadStore
from service.embedded_nats import EmbeddedNats
from service.jobs.store import JobSettings, JobStore
from service.kvwatch import open_bucket
from service.registry.store import RegistryStore
from service.settings import Settings
from service.usage.stream import ensure_stream, stream_config


def test_usage_stream_replicas_override_the_common_setting():
    assert Settings(_env_file=None).usage_replicas == 1
    assert Settings(_env_file=None, js_replicas=3).usage_replicas == 3
    assert Settings(_env_file=None, js_replicas=3, usage_stream_replicas=1).usage_replicas == 1


async def test_replicas_above_one_on_a_single_server_fall_back_to_one(caplog):
    caplog.set_level(logging.WARNING)
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="replicas-")) / "js")
    nc = await nats.connect(server.start())
    try:
        js = nc.jetstream()
        await JobStore(nc, JobSettings(max_age_s=3600, results_ttl_s=7200, duplicate_window_s=60, ack_wait_s=30,
                                       replicas=3)).open()
        await RegistryStore().start(nc, replicas=3)
        await open_bucket(nc, KeyValueConfig(bucket=subjects.BREAKER_BUCKET, history=1, replicas=3))
        await PayloadStore(nc, replicas=3).bucket()
        await ensure_stream(js, stream_config(Settings(_env_file=None, js_replicas=3)))
        streams = [subjects.JOBS_STREAM, subjects.RESULTS_STREAM, f"KV_{subjects.JOBS_BUCKET}",
                   f"KV_{subjects.REGISTRY_BUCKET}", f"OBJ_{subjects.REGISTRY_DOCS_BUCKET}",
                   f"KV_{subjects.BREAKER_BUCKET}", f"OBJ_{subjects.PAYLOAD_BUCKET}", "INTEGRATIONS_USAGE"]
        for name in streams:
            assert (await js.stream_info(name)).config.num_replicas == 1, name
        assert sum("cannot create 3 replicas" in r.getMessage() for r in caplog.records) == len(streams)

        # Existing assets: a second start asks for 3 again; the refusal is logged, nothing breaks.
        caplog.clear()
        await JobStore(nc, JobSettings(max_age_s=3600, results_ttl_s=7200, duplicate_window_s=60, ack_wait_s=30,
                                       replicas=3)).open()
        await RegistryStore().start(nc, replicas=3)
        await open_bucket(nc, KeyValueConfig(bucket=subjects.BREAKER_BUCKET, history=1, replicas=3))
        await PayloadStore(nc, replicas=3).bucket()
        assert any("keeps 1 replicas" in r.getMessage() for r in caplog.records)
        for name in streams:
            assert (await js.stream_info(name)).config.num_replicas == 1, name
    finally:
        await nc.close()
        server.stop()
