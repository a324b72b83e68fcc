"""How NATS_URL credentials and the NATS_TLS_* files reach every NATS connection (worker broker,
usage pipeline, api)."""

import ssl
from pathlib import Path

import pytest

from api.settings import ApiSettings
from contracts.natsurl import split_credentials
from handlers.connection import connect_options
from service.settings import Settings
from tests.fakes.tls import make_tls


@pytest.mark.parametrize("split", [split_credentials])
def test_credentials_leave_the_urls_and_apply_to_every_server(split):
    assert split(["tls://worker:p%40ss@nats-1:4222", "tls://worker:p%40ss@nats-2:4222"]) == (
        ["tls://nats-1:4222", "tls://nats-2:4222"], {"user": "worker", "password": "p@ss"})
    assert split(["nats://tok@h:4222", "nats://h2:4222"]) == (["nats://h:4222", "nats://h2:4222"], {"token": "tok"})
    assert split(["nats://h:4222"]) == (["nats://h:4222"], {})


def test_worker_options_carry_user_password_and_tls(tmp_path: Path):
    make_tls(tmp_path)
    settings = Settings(_env_file=None, nats_url="tls://worker:pw@127.0.0.1:4222,tls://worker:pw@127.0.0.1:4223",
                        nats_tls_ca=tmp_path / "ca.pem", nats_tls_cert=tmp_path / "server.pem",
                        nats_tls_key=tmp_path / "server-key.pem")
    security = connect_options(settings)["security"]
    assert (security.username, security.password) == ("worker", "pw")
    assert isinstance(security.ssl_context, ssl.SSLContext)
    assert Settings(_env_file=None).nats_tls_context() is None


def test_api_tls_context_loads_the_client_certificate(tmp_path: Path):
    make_tls(tmp_path)
    context = ApiSettings(_env_file=None, nats_tls_ca=tmp_path / "ca.pem", nats_tls_cert=tmp_path / "server.pem",
                          nats_tls_key=tmp_path / "server-key.pem").nats_tls_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(FileNotFoundError):
        ApiSettings(_env_file=None, nats_tls_cert=tmp_path / "missing.pem").nats_tls_context()
