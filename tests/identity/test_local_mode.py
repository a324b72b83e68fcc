"""Local mode (no Identity): JWT callers (HS256 with a secret, RS256 with a JWKS URL), the
credentials file (org → provider → key) beside the environment's keys, and credentialId."""

import base64
import hashlib
import hmac
import json
import os
import tempfile
import time
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.auth.keys import KeyStore
from service.commands import Command, run_command
from service.container import Services
from service.credentials import CredentialsFileError
from service.settings import Settings
from tests.conftest import free_port

SECRET = "local-jwt-secret-for-tests-0123456789"
CHAT = {"provider": "openai", "operation": "chat.completions", "params": {"model": "gpt-4o-mini", "prompt": "hi"}}


def local_settings(keyed_openai, **overrides) -> Settings:
    base = {"_env_file": None, "data_dir": Path(tempfile.mkdtemp(prefix="test-local-")),
            "openai_base_url": keyed_openai.base_url, "huggingface_base_url": "http://127.0.0.1:9",
            "upstream_timeout_s": 3, "identity_timeout_s": 1.0}
    return Settings(**{**base, **overrides})


async def run(services: Services, headers: dict, body: dict | None = None) -> tuple[int, dict]:
    reply = await run_command(services.execute, Command(orjson.dumps(body or CHAT), headers, "req_test"))
    return reply.status, orjson.loads(reply.body)


def token(claims: dict, key=SECRET, alg="HS256", headers: dict | None = None) -> str:
    return jwt.encode({"sub": "u1", "exp": int(time.time()) + 600, **claims}, key, algorithm=alg, headers=headers)


def hmac_token(claims: dict, key: bytes) -> str:
    """HS256 by hand (PyJWT refuses a PEM key as an HMAC secret): an algorithm-confusion forgery."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = ".".join(part(json.dumps(x).encode()) for x in (
        {"alg": "HS256", "typ": "JWT", "kid": "k1"}, {"sub": "u1", "exp": int(time.time()) + 600, **claims}))
    return f"{signing_input}.{part(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def bearer(value: str, org: str | None = None) -> dict:
    return {"authorization": f"Bearer {value}", **({"x-org-id": org} if org else {})}


@pytest.fixture
async def hs256(keyed_openai):
    services = Services(local_settings(keyed_openai, jwt_secret=SECRET, openai_api_key="sk-ops"))
    yield services
    await services.close()


async def test_hs256_jwt_callers_and_their_orgs(hs256):
    status, body = await run(hs256, bearer(token({"org": "acme"})))
    assert status == 200 and body["data"]["content"] == "answered with ops"       # the env key
    assert (await run(hs256, bearer(token({"organizations": [{"id": "acme"}, "globex"]}), "globex")))[0] == 200
    status, body = await run(hs256, bearer(token({"org": "acme"}), "globex"))
    assert status == 403 and body["reason"] == "org_forbidden"
    admin = token({"org": "acme", "entitlements": ["integrations:admin"]})
    assert (await run(hs256, bearer(admin, "globex")))[0] == 200
    assert (await run(hs256, bearer(token({"scope": "read cap:integrations.admin"}), "any-org")))[0] == 200
    # no org claim: the default org only
    assert (await run(hs256, bearer(token({}))))[0] == 200
    assert (await run(hs256, bearer(token({}), "acme")))[0] == 403


@pytest.mark.parametrize("bad", [
    lambda: token({"exp": int(time.time()) - 120}),                 # expired (beyond the leeway)
    lambda: token({}, key="another-secret-of-sufficient-length"),   # wrong signature
    lambda: jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256"),   # no exp
    lambda: token({}).rsplit(".", 1)[0] + ".x",                     # mangled
    lambda: jwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, None, algorithm="none"),
])
async def test_bad_jwts_are_401(hs256, bad):
    status, body = await run(hs256, bearer(bad()))
    assert status == 401 and body["reason"] == "unauthenticated"


async def test_local_api_keys_still_work_beside_jwts(hs256, keyed_openai):
    _, key = KeyStore(hs256.settings.key_store_path).create("svc", org="acme")
    assert (await run(hs256, {"x-api-key": key}))[0] == 200


@pytest.fixture
def rsa_key(identity_fake):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    identity_fake.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
    yield private
    identity_fake.jwks = {"keys": []}


async def test_rs256_jwts_from_a_jwks_url(identity_fake, keyed_openai, rsa_key):
    services = Services(local_settings(keyed_openai, jwt_jwks_url=f"{identity_fake.url}/.well-known/jwks.json",
                                       jwt_audience="integrations", openai_api_key="sk-ops"))
    try:
        good = token({"org": "acme", "aud": "integrations"}, key=rsa_key, alg="RS256", headers={"kid": "k1"})
        assert (await run(services, bearer(good)))[0] == 200
        fetches = identity_fake.count("/.well-known/jwks.json")
        assert (await run(services, bearer(good)))[0] == 200
        assert identity_fake.count("/.well-known/jwks.json") == fetches     # keys are kept
        wrong_aud = token({"aud": "other"}, key=rsa_key, alg="RS256", headers={"kid": "k1"})
        assert (await run(services, bearer(wrong_aud)))[0] == 401
        # algorithm confusion: an HS256 token "signed" with the public key is not checked against it
        public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        assert (await run(services, bearer(hmac_token({"aud": "integrations"}, public_pem))))[0] == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        unknown_kid = token({"aud": "integrations"}, key=other, alg="RS256", headers={"kid": "k2"})
        assert (await run(services, bearer(unknown_kid)))[0] == 401
    finally:
        await services.close()


async def test_unreachable_jwks_is_a_503_not_a_401(keyed_openai, rsa_key):
    services = Services(local_settings(keyed_openai,
                                       jwt_jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"))
    try:
        status, body = await run(services, bearer(token({}, key=rsa_key, alg="RS256", headers={"kid": "k1"})))
        assert status == 503 and body["reason"] == "identity_unavailable"
    finally:
        await services.close()


def write_credentials(content: dict | str, mode: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="test-creds-")) / "credentials.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    os.chmod(path, mode)
    return path


@pytest.fixture
async def file_keys(keyed_openai):
    path = write_credentials({"acme": {"openai": "sk-acme"}, "globex": {"openai": "sk-globex"}}, 0o600)
    services = Services(local_settings(keyed_openai, credentials_file=path, openai_api_key="sk-ops"))
    store = KeyStore(services.settings.key_store_path)
    keys = {org: store.create(org, org=org)[1] for org in ("acme", "globex", "initech")}
    yield services, keys
    await services.close()


async def test_credentials_file_serves_each_org_its_key(file_keys):
    services, keys = file_keys
    status, body = await run(services, {"x-api-key": keys["acme"]})
    assert status == 200 and body["data"]["content"] == "answered with acme-org"
    _, body = await run(services, {"x-api-key": keys["globex"]})
    assert body["data"]["content"] == "answered with globex-org"
    _, body = await run(services, {"x-api-key": keys["initech"]})      # no entry: the environment's key
    assert body["data"]["content"] == "answered with ops"
    cap = await run_command(services.discovery.capabilities, Command(b"", {"x-api-key": keys["acme"]}, "req_c"))
    access = orjson.loads(cap.body)["byProvider"]["openai"]["access"]
    assert access == {"hasCredential": True, "credentialSource": "org-wide", "isEnabled": True, "lastUsedAt": None}


async def test_credential_ids_in_local_mode(file_keys):
    services, keys = file_keys
    acme = {"x-api-key": keys["acme"]}
    assert (await run(services, acme, {**CHAT, "credentialId": "file:acme:openai"}))[1]["data"]["content"] == \
        "answered with acme-org"
    assert (await run(services, acme, {**CHAT, "credentialId": "env:openai"}))[1]["data"]["content"] == \
        "answered with ops"
    status, body = await run(services, acme, {**CHAT, "credentialId": "file:globex:openai"})
    assert status == 403 and body["reason"] == "credential_forbidden"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_credentials_file_others_can_read_is_refused(keyed_openai, mode):
    path = write_credentials({"acme": {"openai": "sk-acme"}}, mode)
    with pytest.raises(CredentialsFileError, match="chmod 600"):
        Services(local_settings(keyed_openai, credentials_file=path))


@pytest.mark.parametrize("content", [
    '{"acme": {"openai": "sk-secret-in-bad-json"', '{"acme": ["sk-secret-in-a-list"]}', '{"acme": {"openai": 42}}'])
def test_a_malformed_credentials_file_is_refused_without_echoing_it(keyed_openai, content):
    path = write_credentials(content, 0o600)
    with pytest.raises(CredentialsFileError) as err:
        Services(local_settings(keyed_openai, credentials_file=path))
    assert "sk-secret" not in str(err.value) and str(path) in str(err.value)


async def test_a_credentials_file_that_becomes_readable_is_ignored(file_keys, caplog):
    services, keys = file_keys
    path = services.settings.credentials_file
    os.chmod(path, 0o644)
    path.touch()
    os.utime(path, (time.time() + 5, time.time() + 5))
    file_resolver = services.credentials.resolvers[0]
    file_resolver._checked = 0.0
    _, body = await run(services, {"x-api-key": keys["acme"]})
    assert body["data"]["content"] == "answered with ops"           # the file's keys are no longer served
    assert "accessible by group or others" in caplog.text and "sk-acme" not in caplog.text
