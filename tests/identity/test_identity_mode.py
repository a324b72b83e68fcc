"""Identity mode over the bus, from a plain nats-py client: each way of authenticating, the org
rule, whose provider key each caller gets, credentialId, and the failures (401, 403, 400)."""

import logging

import orjson
import pytest

from tests.fakes.identity import FakeIdentity
from tests.identity.conftest import PROVIDER_KEYS, Directory

EXECUTE = "integrations.v1.execute"


def chat(**extra) -> dict:
    return {"provider": "openai", "operation": "chat.completions",
            "params": {"model": "gpt-4o-mini", "prompt": "hi"}, **extra}


async def execute(nc, headers: dict, body: dict | None = None) -> tuple[int, dict]:
    msg = await nc.request(EXECUTE, orjson.dumps(body or chat()), timeout=15, headers=headers)
    return int(msg.headers["x-status"]), orjson.loads(msg.data)


def bearer(token: str, org: str | None = None) -> dict:
    return {"authorization": f"Bearer {token}", **({"x-org-id": org} if org else {})}


async def test_user_bearer_uses_the_users_personal_key(identity_worker, inc, directory: Directory, records):
    status, body = await execute(inc, bearer(directory.alice, "acme"))
    assert status == 200, body
    assert body["data"]["content"] == "answered with alice"
    record = records[-1]
    assert (record.principal_id, record.principal_type, record.org) == ("alice", "user", "acme")
    assert record.credential_source == "personal" and record.credential_id == directory.alice_credential


async def test_member_without_a_key_uses_the_org_wide_key_and_the_org_comes_from_the_token(
        identity_worker, inc, directory, records):
    status, body = await execute(inc, bearer(directory.bob))          # no X-Org-Id: bob's first membership
    assert status == 200, body
    assert body["data"]["content"] == "answered with acme-org"
    assert records[-1].org == "acme" and records[-1].credential_source == "org-wide"


async def test_api_key_caller_reaches_its_orgs_keys_through_the_service_token(
        identity_worker, inc, directory, identity_fake: FakeIdentity, records):
    status, body = await execute(inc, {"x-api-key": directory.acme_api_key})
    assert status == 200, body
    assert body["data"]["content"] == "answered with acme-org"
    lookup = [r for r in identity_fake.requests if r["path"].startswith("/api/internal/credentials/api:")][-1]
    assert lookup["headers"]["authorization"] == f"Bearer {identity_fake.service_token}"
    assert lookup["headers"]["x-service-id"] == "integrations" and lookup["headers"]["x-org-id"] == "acme"
    assert records[-1].principal_type == "api_key" and records[-1].credential_source == "org-wide"


async def test_agent_token_acts_in_the_agents_org(identity_worker, inc, directory, records):
    status, body = await execute(inc, bearer(directory.agent))
    assert status == 200, body
    record = records[-1]
    assert (record.principal_id, record.principal_type, record.org) == ("assistant:coordinator", "agent", "acme")


async def test_cookies_token_and_server_side_session(identity_worker, inc, directory, identity_fake):
    status, body = await execute(inc, {"cookie": f"theme=dark; token={directory.alice}"})
    assert status == 200 and body["data"]["content"] == "answered with alice"
    session = identity_fake.add_session("bob")
    status, body = await execute(inc, {"cookie": f"symbia_session={session}"})
    assert status == 200 and body["data"]["content"] == "answered with acme-org"   # via the service token
    assert any(r["path"] == "/api/users/me" for r in identity_fake.requests)


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer tok_unknown"}, {"x-api-key": "sk_sym_unknown"}, {"cookie": "token=nope"},
    {"authorization": "Basic YWxpY2U6cHc="},
])
async def test_unknown_credentials_are_401(identity_worker, inc, headers):
    status, body = await execute(inc, headers)
    assert status == 401 and body["error"] == "Authentication required" and body["reason"] == "unauthenticated"


async def test_expired_and_revoked_tokens_are_401(identity_worker, inc, identity_fake):
    expired = identity_fake.issue("alice", ttl_s=-5)
    revoked = identity_fake.issue("alice")
    identity_fake.revoke(revoked)
    for token in (expired, revoked):
        status, body = await execute(inc, bearer(token, "acme"))
        assert status == 401 and body["category"] == "auth"


@pytest.mark.parametrize("who,org,status,reason", [
    ("alice", "globex", 403, "org_forbidden"),
    ("acme_api_key", "globex", 403, "org_forbidden"),
    ("orgless_api_key", "acme", 403, "org_forbidden"),
    ("orgless_api_key", None, 400, "org_required"),
    ("nomad", None, 400, "org_required"),
    ("nomad", "acme", 403, "org_forbidden"),
])
async def test_a_principal_acts_only_in_its_own_orgs(identity_worker, inc, directory, who, org, status, reason):
    secret = getattr(directory, who)
    headers = {"x-api-key": secret} if who.endswith("api_key") else bearer(secret)
    if org:
        headers["x-org-id"] = org
    got, body = await execute(inc, headers)
    assert got == status and body["reason"] == reason, body
    assert body["success"] is False and body["requestId"]


async def test_admins_may_act_in_any_org(identity_worker, inc, directory, records):
    status, body = await execute(inc, bearer(directory.root, "globex"))           # Identity super admin
    assert status == 200 and body["data"]["content"] == "answered with globex-org"
    status, body = await execute(inc, bearer(directory.ops, "globex"))            # integrations:admin
    assert status == 200 and body["data"]["content"] == "answered with globex-org"
    assert records[-1].org == "globex"


async def test_credential_id_is_honoured_and_checked(identity_worker, inc, directory, records):
    status, body = await execute(inc, bearer(directory.alice, "acme"), chat(credentialId=directory.alice_credential))
    assert status == 200 and body["data"]["content"] == "answered with alice"
    assert records[-1].credential_id == directory.alice_credential
    # an org-wide credential of the caller's org, owned by someone else
    status, body = await execute(inc, bearer(directory.bob, "acme"), chat(credentialId=directory.acme_credential))
    assert status == 200 and body["data"]["content"] == "answered with acme-org"
    assert records[-1].credential_source == "org-wide"
    # another org's org-wide key, another user's personal key, and an id that does not exist: one 403
    for credential_id in (directory.globex_credential, directory.carol_credential, "cred_nope"):
        status, body = await execute(inc, bearer(directory.alice, "acme"), chat(credentialId=credential_id))
        assert status == 403 and body["reason"] == "credential_forbidden", body
        assert "sk-" not in body["error"]


async def test_even_an_admin_cannot_name_another_orgs_credential_from_its_own_org(identity_worker, inc, directory):
    status, body = await execute(inc, bearer(directory.ops, "acme"), chat(credentialId=directory.globex_credential))
    assert status == 403 and body["reason"] == "credential_forbidden"


async def test_missing_key_is_a_400_auth_envelope_saying_where_to_add_it(identity_worker, inc, identity_fake):
    token = identity_fake.add_user("dave", ["initech"])
    status, body = await execute(inc, bearer(token))
    assert status == 400 and body["category"] == "auth" and body["reason"] == "provider_credential_missing"
    assert "Settings" in body["error"] and body["provider"] == "openai"


async def test_no_secret_reaches_logs_or_replies(identity_worker, inc, directory, identity_fake, caplog):
    caplog.set_level(logging.DEBUG)
    replies = []
    for headers, body in (
        (bearer(directory.alice, "acme"), chat()),
        ({"x-api-key": directory.acme_api_key}, chat()),
        (bearer(directory.alice, "acme"), chat(credentialId=directory.globex_credential)),
        (bearer(directory.alice, "globex"), chat()),
        ({"authorization": "Bearer tok_not_a_real_one_0123456789"}, chat()),
        (bearer(directory.carol, "globex"), chat(params={"model": "m", "prompt": "x", "foo": 1})),
    ):
        replies.append(orjson.dumps(await execute(inc, headers, body)).decode())
    secrets = [directory.alice, directory.acme_api_key, identity_fake.service_token, *PROVIDER_KEYS,
               "tok_not_a_real_one_0123456789"]
    text = caplog.text + "".join(replies)
    assert [s for s in secrets if s in text] == []
