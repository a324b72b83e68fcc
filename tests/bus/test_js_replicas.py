"""INTEGRATIONS_JS_REPLICAS on a single server: every asset is still created (one replica, with a
warning) and a worker keeps starting; the cluster side is tests/e2e/test_cluster.py."""

import asyncio
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import pytest
from nats.js.api import KeyValueConfig
from nats.js.errors import ServiceUnavailableError

from contracts import subjects
from handlers.payloads import PayloadStore
from service.embedded_nats import EmbeddedNats
from service.jobs.store import JobSettings, JobStore
from service.jsreplicas import jetstream_answering
from service.kvwatch import open_bucket
from service.registry.store import RegistryStore
from service.settings import Settings
from service.usage.stream import ensure_stream, stream_config
from tests.conftest import free_port


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


async def test_a_worker_waits_for_jetstream_to_answer_before_creating_assets(caplog):
    """Answered (here: "no such stream") → at once; a server whose JetStream does not answer
    (here: none at all, as a cluster still electing leaders) → retried until the timeout."""
    caplog.set_level(logging.WARNING)
    with_js = EmbeddedNats(Path(tempfile.mkdtemp(prefix="js-answering-")) / "js")
    nc = await nats.connect(with_js.start())
    try:
        started = time.monotonic()
        await jetstream_answering(nc.jetstream(), "OBJ_no-such-bucket", timeout_s=5)
        assert time.monotonic() - started < 1
    finally:
        await nc.close()
        with_js.stop()

    port = free_port()
    plain = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "nats-server"), "-a", "127.0.0.1",
                                                 "-p", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):   # the server is starting
            try:
                nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=1, allow_reconnect=False)
                break
            except (OSError, nats.errors.NoServersError):
                await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises((nats.errors.TimeoutError, ServiceUnavailableError)):
            await jetstream_answering(nc.jetstream(timeout=0.5), "OBJ_anything", timeout_s=2.5)
        assert time.monotonic() - started >= 2
        assert "JetStream is not answering yet" in caplog.text
        await nc.close()
    finally:
        plain.terminate()
        await plain.wait()
