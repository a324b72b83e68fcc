"""Jobs without a bus: grants, job signatures, the signing key file, settings, contracts, the interactive-first rule."""

import os
import stat
import time

import pytest
from pydantic import ValidationError

from contracts.jobs import JobBatch, reply_subject_problem
from service.auth.access import Access, AuthenticatedHeaders, Caller
from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.auth.principal import Principal
from service.errors import GatewayError
from service.jobs.grants import JobSigner, job_signature, load_signing_key
from service.settings import Settings

PRINCIPAL = Principal(id="u1", type="user", organizations=("o1", "o2"), entitlements=frozenset({"a", "b"}),
                      default_org="o1", name="Ada", token="secret-token", super_admin=False)
CALLER = Caller(PRINCIPAL, "o2")
BODY = b'{"provider":"openai"}'


def signed(signer: JobSigner, ttl_s: float = 60, **changes):
    grant = signer.mint(CALLER, ttl_s)
    args = {"job_id": "j1", "kind": "execute", "reply_to": None, "body": BODY}
    signature = signer.sign(grant, **args)
    args.update(changes)
    return grant, signature, args


def test_a_verified_job_runs_as_the_caller_of_its_grant_without_the_callers_token():
    signer = JobSigner(b"x" * 32)
    grant, signature, args = signed(signer)
    caller = signer.verify(grant.token, signature, published_at=time.time(), **args)
    assert caller.org == "o2" and caller.principal.id == "u1" and caller.principal.type == "user"
    assert caller.principal.organizations == ("o1", "o2") and caller.principal.entitlements == {"a", "b"}
    assert caller.principal.default_org == "o1" and caller.principal.name == "Ada"
    assert caller.principal.token is None and "secret-token" not in grant.token
    operator = Caller(Principal(id="k", type="api_key", organizations=None, super_admin=True), "any")
    g = signer.mint(operator, 60)
    back = signer.verify(g.token, signer.sign(g, "j", "execute", None, b""), "j", "execute", None, b"", time.time())
    assert back.principal.organizations is None and back.principal.is_admin


@pytest.mark.parametrize("changes", [{"job_id": "j2"}, {"kind": "invoke"}, {"reply_to": "svc.inbox"},
                                     {"body": BODY + b" "}])
def test_a_signature_covers_id_kind_reply_to_and_body(changes):
    signer = JobSigner(b"x" * 32)
    grant, signature, args = signed(signer, **changes)
    with pytest.raises(GatewayError) as err:
        signer.verify(grant.token, signature, published_at=time.time(), **args)
    assert err.value.status == 401 and err.value.reason == "job_grant_invalid" and "signature" in err.value.message


def test_grants_of_another_key_missing_parts_and_expired_grants_are_refused():
    signer, other = JobSigner(b"x" * 32), JobSigner(b"y" * 32)
    grant, signature, args = signed(other)
    with pytest.raises(GatewayError, match=r"grant .* is not valid"):
        signer.verify(grant.token, signature, published_at=time.time(), **args)
    grant, signature, args = signed(signer)
    for token, sig in ((None, signature), (grant.token, None), ("", "")):
        with pytest.raises(GatewayError, match="no grant"):
            signer.verify(token, sig, published_at=time.time(), **args)
    # a job key is not a grant key: a client cannot mint grants with it
    forged = job_signature(grant.job_key, "j1", "execute", None, BODY)
    assert forged == signature
    grant, signature, args = signed(signer, ttl_s=10)
    signer.verify(grant.token, signature, published_at=grant.expires_at + 4, **args)     # clock leeway
    with pytest.raises(GatewayError, match="expired"):
        signer.verify(grant.token, signature, published_at=grant.expires_at + 6, **args)


def test_signing_key_is_created_once_with_mode_600_and_the_setting_wins(tmp_path):
    path = tmp_path / "data" / "job-signing.key"
    first = load_signing_key(None, path)
    assert len(first) == 64 and load_signing_key(None, path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["job-signing.key"]
    assert load_signing_key("z" * 40, path) == b"z" * 40
    path.write_text("short")
    with pytest.raises(ValueError, match="fewer than 32"):
        load_signing_key(None, path)
    with pytest.raises(ValueError):
        JobSigner(b"short")


def test_job_settings_are_checked():
    settings = Settings(_env_file=None)
    assert settings.job_concurrency == 16 and settings.job_results_ttl_s >= settings.job_grant_ttl_s
    with pytest.raises(ValidationError, match="RESULTS_TTL_S must be at least"):
        Settings(_env_file=None, job_results_ttl_s=60, job_grant_ttl_s=3600)
    with pytest.raises(ValidationError):
        Settings(_env_file=None, job_signing_key="too short")


async def test_only_authenticated_headers_skip_authentication(tmp_path):
    access = Access(LocalAuthenticator((), KeyStore(tmp_path / "keys.json")), "default")
    assert await access.caller(AuthenticatedHeaders({"x-org-id": "ignored"}, CALLER)) is CALLER
    with pytest.raises(GatewayError) as err:       # the same headers from the wire are just headers
        await access.caller({"x-job-grant": "anything", "x-org-id": "o2"})
    assert err.value.status == 401


def test_batch_contract():
    assert len(JobBatch.model_validate([{"request": {}}]).jobs) == 1
    assert JobBatch.model_validate({"jobs": [{"request": {}, "kind": "invoke"}]}).jobs[0].kind == "invoke"
    with pytest.raises(ValidationError):
        JobBatch.model_validate({"jobs": [{"request": {}, "kind": "other"}]})
    assert reply_subject_problem("_INBOX.abc.1") is None and reply_subject_problem("svc.jobs.done") is None
    for bad in ("integrations.v1.results.x", "$JS.API.X", "a..b", "a.>", "a b", "x" * 300, ""):
        assert reply_subject_problem(bad), bad


async def test_jobs_hold_back_only_while_interactive_calls_wait_on_a_late_loop():
    from handlers.jobs import InteractiveFirst

    first = InteractiveFirst(lag_limit_s=0.002, quiet_s=0.05)
    first.lag_s = 0.010
    assert not first.hold_jobs                      # late loop, but no interactive call: jobs go on
    first.begin()
    assert first.hold_jobs
    first.lag_s = 0.001
    assert not first.hold_jobs                      # the loop keeps up: jobs go on
    first.lag_s = 0.010
    first.end()
    assert first.hold_jobs                          # just finished: still within quiet_s
    first._last -= 1
    assert not first.hold_jobs
    disabled = InteractiveFirst(lag_limit_s=0)
    disabled.start()                                # no measuring task when disabled
    assert disabled._task is None
