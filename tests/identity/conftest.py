"""An Identity-mode gateway against fakes of Identity and Catalog (real HTTP servers on
loopback), with its own nats-server: a second worker on the session's server would join the
same queue group as the local-mode `worker` fixture and steal its messages.

The directory (tests/fakes/identity.py) holds two orgs, `acme` and `globex`:
  alice   user in acme, personal OpenAI key  sk-alice
  bob     user in acme, no personal key → acme's org-wide key sk-acme
  carol   user in globex, personal key sk-carol; globex has the org-wide key sk-globex
  ops     user in acme with integrations:admin;  root: Identity super admin, no org
  assistant:coordinator  agent of acme;  assistant:nomad  agent without an org
  API keys: one scoped to acme (no creator), one without an org
"""

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from handlers.app import build_app
from service.embedded_nats import EmbeddedNats
from service.settings import Settings
from tests.fakes.catalog import FakeCatalog
from tests.fakes.identity import FakeIdentity
from tests.fakes.keyed_openai import KeyedOpenAI

PROVIDER_KEYS = {"sk-alice": "alice", "sk-acme": "acme-org", "sk-globex": "globex-org", "sk-carol": "carol",
                 "sk-ops": "ops"}


@dataclass
class Directory:
    alice: str
    bob: str
    carol: str
    ops: str
    root: str
    agent: str
    nomad: str
    acme_api_key: str
    orgless_api_key: str
    carol_credential: str
    globex_credential: str
    acme_credential: str
    alice_credential: str


@pytest.fixture(scope="session")
def identity_fake() -> Iterator[FakeIdentity]:
    fake = FakeIdentity().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def directory(identity_fake: FakeIdentity) -> Directory:
    fake = identity_fake
    alice = fake.add_user("alice", ["acme"])
    bob = fake.add_user("bob", ["acme"])
    carol = fake.add_user("carol", ["globex"])
    ops = fake.add_user("ops", ["acme"], entitlements=["integrations:admin"])
    root = fake.add_user("root", [], super_admin=True)
    fake.add_agent("agent-1", "assistant:coordinator", org="acme")
    fake.add_agent("agent-2", "assistant:nomad", org=None)
    return Directory(
        alice=alice, bob=bob, carol=carol, ops=ops, root=root,
        agent=fake.issue("agent-1", kind="agent"), nomad=fake.issue("agent-2", kind="agent"),
        acme_api_key=fake.add_api_key(org="acme"), orgless_api_key=fake.add_api_key(org=None),
        alice_credential=fake.add_credential("openai", owner="alice", api_key="sk-alice"),
        carol_credential=fake.add_credential("openai", owner="carol", api_key="sk-carol", org="globex"),
        globex_credential=fake.add_credential("openai", owner="carol", api_key="sk-globex", org="globex",
                                              org_wide=True),
        acme_credential=fake.add_credential("openai", owner="acme-admin", api_key="sk-acme", org="acme", org_wide=True),
    )


@pytest.fixture(scope="session")
def catalog_fake() -> Iterator[FakeCatalog]:
    fake = FakeCatalog().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def keyed_openai() -> Iterator[KeyedOpenAI]:
    fake = KeyedOpenAI(PROVIDER_KEYS).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def identity_nats_url() -> Iterator[str]:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="test-nats-identity-")) / "js")
    url = server.start()
    yield url
    server.stop()


def identity_mode_settings(identity: FakeIdentity, openai: KeyedOpenAI, **overrides) -> Settings:
    base = {
        "_env_file": None,
        "data_dir": Path(tempfile.mkdtemp(prefix="test-identity-data-")),
        "identity_service_url": identity.url,
        "service_token": identity.service_token,
        "openai_base_url": openai.base_url,
        "huggingface_base_url": "http://127.0.0.1:9",    # no HF key anywhere: never called
        "models_service_url": "http://127.0.0.1:9",      # symbia-labs: no Models service here
        "provider_presets": "none",                      # built-ins only: openai, anthropic, huggingface, symbia-labs
        "identity_timeout_s": 1.0,
        "upstream_timeout_s": 3,
        "heartbeat_s": 0.5,
        "outbound_allow": "127.0.0.1",                   # Catalog's integration specs are on the loopback fake
    }
    return Settings(**{**base, **overrides})


@pytest.fixture(scope="session")
def identity_settings(identity_fake, directory, catalog_fake, keyed_openai, identity_nats_url) -> Settings:
    return identity_mode_settings(identity_fake, keyed_openai, nats_url=identity_nats_url,
                                  catalog_service_url=catalog_fake.url)


@pytest.fixture(scope="session")
async def identity_worker(identity_settings: Settings) -> AsyncIterator:
    app = build_app(identity_settings)
    async with app:
        yield app


@pytest.fixture(scope="session")
async def identity_http(identity_worker, identity_nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiSettings(_env_file=None, nats_url=identity_nats_url, worker_silence_s=3, ready_timeout_s=1))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=30) as client:
            yield client


@pytest.fixture
async def inc(identity_nats_url: str) -> AsyncIterator:
    """A plain nats-py client on the Identity-mode gateway's bus."""
    import nats

    client = await nats.connect(identity_nats_url)
    yield client
    await client.close()


@pytest.fixture
def records(identity_worker):
    """The CallRecords of authenticated calls, as the usage pipeline receives them."""
    seen: list = []

    async def observe(command, reply):
        seen.append(command.record)

    identity_worker.services.observers.append(observe)
    yield seen
    identity_worker.services.observers.remove(observe)
