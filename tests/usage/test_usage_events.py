"""Usage events on the stream, read with a plain nats-py JetStream consumer: one per call that
got past authentication, whatever its outcome; stored before the reply leaves the worker."""

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nats
import orjson
from nats.js.errors import NotFoundError

from contracts.usage import UsageEvent
from service.providers.models import cost_usd_micros
from service.usage.publisher import UsagePublisher
from tests.conftest import CALLER_KEY, free_port
from tests.usage.conftest import STREAM, chat, gateway, new_org, stream_events

DOCS = Path(__file__).resolve().parents[2] / "docs" / "USAGE.md"


async def test_one_event_per_outcome(gw, llmock):
    org = new_org()
    trace = "0af7651916cd43dd8448eb211c80319c"
    ok = await gw.execute(org, headers={"x-symbia-caller": "assistants",
                                        "traceparent": f"00-{trace}-b7ad6b7169203331-01"})
    llmock.scenario({"type": "fail", "status": 503})
    upstream = await gw.execute(org)
    rejected = await gw.execute(org, body={"provider": "no-such-provider"})
    malformed = await gw.call("integrations.v1.execute", b'{"provider": ', org=org)
    unauthenticated = await gw.call("integrations.v1.execute", chat(), key="wrong", org=org)
    assert [r[0] for r in (ok, upstream, rejected, malformed, unauthenticated)] == [200, 502, 400, 400, 401]

    events = {e["requestId"]: e for e in await stream_events(gw.nc, org)}
    assert len(events) == 4  # the unauthenticated call is not usage
    for event in events.values():
        UsageEvent.model_validate(event)

    success = events[ok[1]["requestId"]]
    usage = ok[1]["data"]["usage"]
    served = ok[1]["data"]["model"]
    assert success["success"] is True and success["statusCode"] == 200 and success["errorCategory"] is None
    assert success["kind"] == "execute" and success["orgId"] == org and success["principalId"] == "config-key-1"
    assert success["principalType"] == "api_key" and success["integration"] == "openai"
    assert success["operation"] == "chat.completions" and success["modelRequested"] == "gpt-4o-mini"
    assert success["modelServed"] == served
    assert (success["promptTokens"], success["completionTokens"], success["totalTokens"]) == (
        usage["promptTokens"], usage["completionTokens"], usage["totalTokens"])
    assert success["costMicros"] == cost_usd_micros("openai", served, usage["promptTokens"],
                                                    usage["completionTokens"]) is not None
    assert success["credentialSource"] == "env" and success["callerService"] == "assistants"
    assert success["traceId"] == trace and success["durationMs"] >= 0

    failed = events[upstream[1]["requestId"]]
    assert failed["success"] is False and failed["statusCode"] == 502 and failed["errorCategory"] == "provider"
    assert failed["errorReason"] == "upstream_error" and failed["totalTokens"] == 0 and failed["costMicros"] == 0
    assert failed["modelServed"] is None and failed["errorMessage"]

    invalid = events[rejected[1]["requestId"]]
    assert invalid["statusCode"] == 400 and invalid["errorCategory"] == "validation"
    assert invalid["errorReason"] == "unknown_provider" and invalid["integration"] == "no-such-provider"
    assert invalid["costMicros"] is None and invalid["credentialSource"] is None

    bad_json = events[malformed[1]["requestId"]]
    assert bad_json["errorReason"] == "invalid_json" and bad_json["integration"] is None


async def test_missing_credential_is_an_event(llmock):
    async with gateway("sqlite", llmock.base_url, openai_api_key=None) as g:
        org = new_org()
        status, body, _ = await g.execute(org)
        assert status == 400 and body["reason"] == "provider_credential_missing"
        (event,) = await stream_events(g.nc, org)
        assert event["errorCategory"] == "auth" and event["errorReason"] == "provider_credential_missing"
        assert event["integration"] == "openai" and event["credentialSource"] is None


async def test_the_event_travels_ahead_of_its_reply(gw):
    """The event is sent on the reply's connection before the reply, so the server has it when
    the reply arrives; JetStream stores it asynchronously, within moments."""
    org = new_org()
    js = gw.nc.jetstream()
    for _ in range(5):
        _, body, _ = await gw.execute(org)
        seen = None
        for _ in range(50):
            with contextlib.suppress(NotFoundError):
                last = await js.get_last_msg(STREAM, f"integrations.v1.events.usage.{org}")
                seen = orjson.loads(last.data)["requestId"]
            if seen == body["requestId"]:
                break
            await asyncio.sleep(0.01)
        assert seen == body["requestId"]


async def test_a_redelivered_or_republished_event_is_counted_once(gw):
    org = new_org()
    status, _, _ = await gw.execute(org)
    assert status == 200
    await gw.wait_rows(org, 1)
    (event,) = await stream_events(gw.nc, org)
    js = gw.nc.jetstream()
    subject = f"integrations.v1.events.usage.{org}"
    # A worker republishing an event JetStream had stored: the duplicate window drops it.
    ack = await js.publish(subject, orjson.dumps(event), headers={"Nats-Msg-Id": event["id"]})
    assert ack.duplicate is True
    # Outside the window (or another publisher): two messages in the stream, one row in the store.
    for _ in range(2):
        await js.publish(subject, orjson.dumps(event))
    other = (await gw.execute(org))[1]  # a marker that the writer got past the copies
    assert other["success"] is True
    body = await gw.wait_rows(org, 2)
    await asyncio.sleep(0.3)
    assert (await gw.summary(org))["summary"]["totalRequests"] == 2 == body["summary"]["totalRequests"]
    assert len(await stream_events(gw.nc, org)) == 4


async def test_replies_do_not_wait_for_a_missing_stream_and_no_event_is_lost(llmock):
    async with gateway("sqlite", llmock.base_url) as g:
        org = new_org()
        assert (await g.execute(org))[0] == 200
        await g.wait_rows(org, 1)
        await g.nc.jetstream().delete_stream(STREAM)  # an operator's mistake: events would have nowhere to go
        replies = await asyncio.gather(*(g.execute(org) for _ in range(10)))
        assert all(status == 200 for status, _, _ in replies)
        # The republisher re-declares the stream and publishes the buffered events; the writer
        # re-creates its consumer. (The first row went with the deleted stream but is in the store.)
        await g.wait_rows(org, 11)
        assert g.services.usage.publisher.buffered == 0 and g.services.usage.publisher.dropped == 0


def _nats_without_jetstream() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "nats-server"), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"nats://127.0.0.1:{port}"


async def test_without_jetstream_events_wait_in_a_bounded_buffer_then_are_logged(caplog):
    proc, url = _nats_without_jetstream()
    try:
        for _ in range(100):
            try:
                nc = await nats.connect(url, connect_timeout=0.2, max_reconnect_attempts=0)
                break
            except Exception:
                await asyncio.sleep(0.05)
        publisher = UsagePublisher("INTEGRATIONS_USAGE", publish_timeout_s=0.2, buffer_max=3)

        async def no_stream() -> None:
            raise RuntimeError("JetStream is not enabled")

        publisher.attach(nc.jetstream(), no_stream)
        events = [UsageEvent(id=f"e{i}", timestamp="2026-01-01T00:00:00Z", requestId=f"r{i}", kind="execute",
                             orgId="o", principalId="p", principalType="user", success=True, statusCode=200,
                             durationMs=1) for i in range(5)]
        caplog.set_level(logging.WARNING, "symbia.integrations.usage")
        started = asyncio.get_running_loop().time()
        for event in events:
            await publisher.publish(event.model_dump())  # never raises
        assert asyncio.get_running_loop().time() - started < 1.5  # only the first one waited
        assert publisher.buffered == 3 and publisher.dropped == 2
        await publisher.close(0.2)
        await nc.close()
        logged = caplog.text
        assert '"id":"e0"' in logged and '"id":"e1"' in logged  # dropped, with the event to replay it
        assert all(f'"id":"e{i}"' in logged for i in (2, 3, 4))  # still buffered at shutdown
    finally:
        proc.terminate()
        proc.wait(10)


async def test_docs_consumer_example_reads_the_events(worker, nc, nats_url):
    org = new_org()
    for _ in range(3):
        msg = await nc.request("integrations.v1.execute", orjson.dumps(chat()), timeout=15,
                               headers={"x-api-key": CALLER_KEY, "x-org-id": org})
        assert msg.headers["x-status"] == "200"
    code = re.search(r"<!-- consumer-example -->\s*```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={"NATS_URL": nats_url}, cwd=tempfile.mkdtemp(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    lines = [line for line in stdout.decode().splitlines() if org in line]
    assert len(lines) == 3 and all("openai 200" in line for line in lines), stdout.decode()
