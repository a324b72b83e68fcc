"""Identity round trips and worker-side latency per call in Identity mode, cold and warm cache.

Runs the execute and capabilities handlers (no bus) of an Identity-mode worker against the
project fakes of Identity and an OpenAI upstream on loopback, for each way of authenticating,
and counts the requests Identity receives.

    .venv/bin/python -m bench.identity_roundtrips [--warm 200]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from service.commands import Command, run_command
from service.container import Services
from service.settings import Settings
from tests.fakes.identity import FakeIdentity
from tests.fakes.keyed_openai import KeyedOpenAI

CHAT = orjson.dumps({"provider": "openai", "operation": "chat.completions",
                     "params": {"model": "gpt-4o-mini", "prompt": "hi"}})


async def measure(handler, headers: dict, body: bytes, identity: FakeIdentity, warm: int) -> tuple[int, float, int,
                                                                                                   float]:
    start = len(identity.requests)
    t0 = time.perf_counter()
    reply = await run_command(handler, Command(body, headers, "req_bench"))
    cold_ms = (time.perf_counter() - t0) * 1000
    assert reply.status == 200, reply.body
    cold = len(identity.requests) - start
    start = len(identity.requests)
    samples = []
    for _ in range(warm):
        t0 = time.perf_counter()
        reply = await run_command(handler, Command(body, headers, "req_bench"))
        samples.append((time.perf_counter() - t0) * 1000)
        assert reply.status == 200
    return cold, cold_ms, len(identity.requests) - start, statistics.median(samples)


async def main(warm: int) -> None:
    identity = FakeIdentity().start()
    openai = KeyedOpenAI({"sk-user": "user", "sk-org": "org"}).start()
    identity.add_credential("openai", owner="ana", api_key="sk-user")
    identity.add_credential("openai", owner="admin", api_key="sk-org", org="acme", org_wide=True)
    credential = identity.add_credential("openai", owner="ben", api_key="sk-user")
    identity.add_user("cy", ["acme"])
    session = identity.add_session("cy")
    cases = {
        "bearer, personal key": ({"authorization": f"Bearer {identity.add_user('ana', ['acme'])}"}, CHAT),
        "bearer, org-wide key": ({"authorization": f"Bearer {identity.add_user('bo', ['acme'])}"}, CHAT),
        "bearer + credentialId": ({"authorization": f"Bearer {identity.add_user('ben', ['acme'])}"},
                                  orjson.dumps({**orjson.loads(CHAT), "credentialId": credential})),
        "X-API-Key (service token)": ({"x-api-key": identity.add_api_key(org="acme")}, CHAT),
        "cookie symbia_session": ({"cookie": f"symbia_session={session}"}, CHAT),
    }
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="bench-identity-")),
                        identity_service_url=identity.url, service_token=identity.service_token,
                        openai_base_url=openai.base_url, huggingface_base_url="http://127.0.0.1:9")
    services = Services(settings)
    try:
        print(f"{'call':<36} {'cold trips':>10} {'cold ms':>8} {'warm trips':>11} {'warm p50 ms':>12}")
        for name, (headers, body) in cases.items():
            cold, cold_ms, warm_trips, p50 = await measure(services.execute, headers, body, identity, warm)
            print(f"{'execute, ' + name:<36} {cold:>10} {cold_ms:>8.2f} {warm_trips:>11} {p50:>12.3f}")
        headers = {"authorization": f"Bearer {identity.add_user('dee', ['acme'])}"}
        cold, cold_ms, warm_trips, p50 = await measure(services.discovery.capabilities, headers, b"", identity, warm)
        print(f"{'capabilities, bearer':<36} {cold:>10} {cold_ms:>8.2f} {warm_trips:>11} {p50:>12.3f}")
        print(f"(warm = {warm} further calls; TTLs: auth {settings.auth_cache_ttl_s:g}s / "
              f"{settings.auth_negative_cache_ttl_s:g}s negative, credentials {settings.credential_cache_ttl_s:g}s / "
              f"{settings.credential_negative_cache_ttl_s:g}s negative)")
    finally:
        await services.close()
        identity.stop()
        openai.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=200)
    asyncio.run(main(parser.parse_args().warm))
