"""Local API keys, org resolution, request ids, URL masking, settings."""

import pytest

from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.auth.principal import Principal, resolve_org
from service.commands import new_request_id
from service.errors import GatewayError
from service.logs import mask_url
from service.settings import Settings


async def test_key_store_keeps_only_hashes_and_revocation_takes_effect(tmp_path):
    store = KeyStore(tmp_path / "keys.json", recheck_s=0)
    record, key = store.create("svc", org="acme")
    assert key not in (tmp_path / "keys.json").read_text()
    assert oct((tmp_path / "keys.json").stat().st_mode)[-3:] == "600"
    auth = LocalAuthenticator((), store)
    principal = await auth.authenticate({"authorization": f"Bearer {key}"})
    assert principal.organizations == ("acme",) and not principal.is_admin
    assert store.revoke(record.id)
    with pytest.raises(GatewayError) as err:
        await auth.authenticate({"x-api-key": key})
    assert err.value.status == 401


async def test_configured_keys_and_missing_or_wrong_keys(tmp_path):
    auth = LocalAuthenticator(("k1",), KeyStore(tmp_path / "k.json"))
    assert (await auth.authenticate({"x-api-key": "k1"})).organizations is None
    for headers in ({}, {"x-api-key": "nope"}, {"authorization": "Basic k1"}, {"authorization": "Bearer "}):
        with pytest.raises(GatewayError) as err:
            await auth.authenticate(headers)
        assert err.value.status == 401 and err.value.reason == "unauthenticated"


def test_org_resolution_and_membership():
    member = Principal(id="u", type="api_key", organizations=("acme",), default_org="acme")
    assert resolve_org(member, None, "default") == "acme"
    assert resolve_org(member, "acme", "default") == "acme"
    with pytest.raises(GatewayError) as err:
        resolve_org(member, "other", "default")
    assert err.value.status == 403
    admin = Principal(id="a", type="api_key", organizations=("acme",), entitlements=frozenset({"integrations:admin"}))
    assert resolve_org(admin, "other", "default") == "other"
    anyorg = Principal(id="k", type="api_key", organizations=None)
    assert resolve_org(anyorg, None, "default") == "default"
    with pytest.raises(GatewayError):
        resolve_org(anyorg, "bad.org", "default")  # would split a NATS subject


def test_request_ids():
    assert new_request_id({}, "req").startswith("req_") and len(new_request_id({}, "req")) == 16
    assert new_request_id({"x-request-id": "abc-123"}, "req") == "abc-123"
    assert new_request_id({"x-request-id": "bad id with spaces"}, "req").startswith("req_")


def test_mask_url():
    assert mask_url("nats://user:secret@h:4222") == "nats://user:***@h:4222"
    assert mask_url("nats://tok@h:4222,nats://h2:4222") == "nats://***@h:4222,nats://h2:4222"
    assert mask_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_settings_names_from_the_operator_contract(monkeypatch):
    monkeypatch.setenv("INTEGRATIONS_PORT", "6000")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://local:8000/v1/")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("INTEGRATIONS_API_KEYS", "a, b,")
    monkeypatch.setenv("INTEGRATIONS_OPERATION_TIMEOUTS", '{"embeddings": 5}')
    s = Settings(_env_file=None)
    assert s.port == 6000 and s.openai_base_url == "http://local:8000/v1" and s.huggingface_api_key == "hf_x"
    assert s.configured_api_keys == ("a", "b")
    assert s.timeout_for("embeddings") == 5 and s.timeout_for("chat.completions") == 120
