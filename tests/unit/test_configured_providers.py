"""The providers file, INTEGRATIONS_PROVIDERS and the presets: what loads, what is refused at
start-up and with which message (no network)."""

import json
import subprocess
import sys

import pytest

from contracts.execute import ExecuteParams
from service.providers.capabilities import build_provider_table
from service.providers.configured import ProviderConfigError, check_provider_config
from service.settings import Settings
from service.tenancy import env_provider_keys

YAML = """\
providers:
  acme:
    baseUrl: https://llm.acme.test/v1/
    operations: [chat.completions, embeddings]
    models: [{id: acme-1, inputPricing: 1.5, outputPricing: 2}]
"""
TOML = """\
[providers.acme]
baseUrl = "https://llm.acme.test/v1"
operations = ["chat.completions", "embeddings"]
models = [{id = "acme-1", inputPricing = 1.5, outputPricing = 2}]
"""


def table(tmp_path, text: str | None = None, suffix: str = ".yaml", **overrides):
    if text is not None:
        path = tmp_path / f"providers{suffix}"
        path.write_text(text)
        overrides["providers_file"] = path
    return build_provider_table(Settings(_env_file=None, **overrides))


@pytest.mark.parametrize("text,suffix", [(YAML, ".yaml"), (TOML, ".toml"), (json.dumps({"providers": [
    {"name": "acme", "base_url": "https://llm.acme.test/v1", "operations": ["chat.completions", "embeddings"],
     "models": [{"id": "acme-1", "input_price": 1.5, "output_price": 2}]}]}), ".json")])
def test_yaml_toml_and_json_describe_the_same_provider(tmp_path, text, suffix):
    spec = table(tmp_path, text, suffix)["acme"]
    assert spec.base_url == "https://llm.acme.test/v1" and spec.source == "config"
    assert list(spec.operations) == ["chat.completions", "embeddings"] and spec.default_model == "acme-1"
    assert spec.needs_credential and spec.credential_env == ("ACME_API_KEY",) and spec.identity_key == "acme"
    assert spec.adapter.headers("k") == {"authorization": "Bearer k"}
    assert "tools" in spec.operations["chat.completions"].params
    assert spec.operations["embeddings"].params == {"model", "input", "text", "dimensions", "user"}


def test_env_entries_come_after_the_file_and_replace_by_name(tmp_path):
    env = json.dumps([{"name": "acme", "baseUrl": "https://other.test/v1", "operations": ["chat.completions"]},
                      {"name": "beta", "baseUrl": "http://beta.test", "auth": "none",
                       "operations": ["chat.completions"]}])
    rows = table(tmp_path, YAML, providers_json=env)
    assert rows["acme"].base_url == "https://other.test/v1" and not rows["beta"].needs_credential
    assert list(rows)[:4] == ["openai", "anthropic", "huggingface", "symbia-labs"]


def test_presets_are_chosen_by_setting(tmp_path):
    assert {"google", "mistral", "cohere", "groq", "together"} <= set(table(tmp_path))
    assert "ollama" not in table(tmp_path)
    every = table(tmp_path, provider_presets="all")
    assert every["ollama"].health_url == "http://localhost:11434/api/version" and not every["ollama"].needs_credential
    assert "google" not in table(tmp_path, provider_presets="none")
    assert list(table(tmp_path, provider_presets="mistral"))[-1] == "mistral"


def test_env_references_and_keys_from_the_environment_or_dot_env(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("ACME_SECRET=from-dotenv\nMISTRAL_API_KEY=m-key\n")
    monkeypatch.setenv("ACME_HOST", "https://acme.test")
    path = tmp_path / "p.yaml"
    path.write_text("providers:\n  acme:\n    baseUrl: ${ACME_HOST}/v1\n    credentialEnv: [ACME_NONE, ACME_SECRET]\n"
                    "    operations: [chat.completions]\n    healthUrl: ${ACME_HEALTH:-https://acme.test/up}\n")
    settings = Settings(_env_file=dotenv, providers_file=path)
    rows = build_provider_table(settings)
    assert rows["acme"].base_url == "https://acme.test/v1" and rows["acme"].health_url == "https://acme.test/up"
    keys = env_provider_keys(settings, rows)
    assert keys["acme"] == "from-dotenv" and keys["mistral"] == "m-key" and keys["google"] is None
    assert "symbia-labs" not in keys


def test_auth_styles(tmp_path):
    rows = table(tmp_path, "providers:\n  h:\n    baseUrl: http://h.test\n    auth: header\n    authHeader: X-Api-Key\n"
                           "    operations: [chat.completions]\n  n:\n    baseUrl: http://n.test\n    auth: none\n"
                           "    operations: [chat.completions]\n    headers: {X-Team: core}\n")
    assert rows["h"].adapter.headers("k") == {"x-api-key": "k"}
    assert rows["n"].adapter.headers("ignored") == {"X-Team": "core"} and rows["n"].credential_env == ()


def test_overriding_a_built_in_needs_override(tmp_path):
    entry = "providers:\n  openai:\n    baseUrl: https://proxy.test/v1\n    operations: [chat.completions]\n"
    with pytest.raises(ProviderConfigError) as err:
        table(tmp_path, entry)
    assert "'openai' is built in" in str(err.value) and "override: true" in str(err.value)
    rows = table(tmp_path, entry + "    override: true\n")
    assert rows["openai"].base_url == "https://proxy.test/v1" and rows["openai"].source == "config"
    assert list(rows["openai"].operations) == ["chat.completions"] and next(iter(rows)) == "openai"


@pytest.mark.parametrize("text,fragments", [
    ("providers:\n  acme:\n    baseURL: http://x\n    operations: [chat.completions]\n",
     ["provider 'acme'", "baseURL", "Extra inputs"]),
    ("providers:\n  acme:\n    baseUrl: http://x\n    operations: [chat.completion]\n",
     ["unknown operation(s) chat.completion"]),
    ("providers:\n  acme:\n    baseUrl: ftp://x\n    operations: [chat.completions]\n", ["baseUrl", "http"]),
    ("providers:\n  acme:\n    baseUrl: http://x\n    auth: header\n    operations: [chat.completions]\n",
     ["authHeader"]),
    ("providers:\n  acme:\n    baseUrl: http://x\n    operations: [chat.completions]\n    excludeParams: [temp]\n",
     ["unknown parameter(s) temp"]),
    ("providers:\n  acme:\n    baseUrl: http://x\n    operations: [chat.completions]\n"
     "    params: {embeddings: [input]}\n", ["does not declare: embeddings"]),
    ("providers:\n  acme:\n    baseUrl: ${ACME_UNSET_URL}\n    operations: [chat.completions]\n",
     ["${ACME_UNSET_URL} is not set"]),
    ("providers:\n  Acme Corp:\n    baseUrl: http://x\n    operations: [chat.completions]\n", ["'Acme Corp'"]),
    ("providers:\n  - {name: a, baseUrl: 'http://x', operations: [chat.completions]}\n"
     "  - {name: a, baseUrl: 'http://y', operations: [chat.completions]}\n", ["'a' is declared twice"]),
    ("providers:\n  acme: [1, 2\n", ["not valid YAML"]),
    ("providers: 5\n", ["expected a `providers` mapping or list"]),
])
def test_invalid_files_are_refused_with_a_message_naming_the_problem(tmp_path, text, fragments):
    with pytest.raises(ProviderConfigError) as err:
        table(tmp_path, text)
    message = str(err.value)
    assert str(tmp_path / "providers.yaml") in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_preset_and_unreadable_file(tmp_path):
    with pytest.raises(ProviderConfigError, match=r"unknown preset.*openrouter"):
        table(tmp_path, provider_presets="google,openrouter")
    message = check_provider_config(Settings(_env_file=None, providers_file=tmp_path / "missing.yaml"))
    assert message and message.startswith("Invalid provider configuration") and "cannot be read" in message


def test_a_worker_refuses_to_start_with_an_invalid_file(tmp_path):
    bad = tmp_path / "providers.yaml"
    bad.write_text("providers:\n  acme:\n    operations: [chat.completions]\n")
    env = {"PATH": "/usr/bin:/bin", "NATS_URL": "nats://127.0.0.1:1", "INTEGRATIONS_PROVIDERS_FILE": str(bad),
           "INTEGRATIONS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "handlers"], env=env, capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode != 0
    assert "Invalid provider configuration" in done.stderr and "baseUrl" in done.stderr
    assert "Traceback" not in done.stderr


def test_chat_api_operations_stream_and_the_mistral_preset_does_not_ask_for_usage(tmp_path):
    rows = table(tmp_path, YAML)
    assert rows["acme"].operations["chat.completions"].streaming
    assert not rows["acme"].operations["embeddings"].streaming
    assert rows["acme"].adapter.stream_usage
    assert rows["google"].operations["image.description"].streaming
    assert rows["mistral"].adapter.stream_usage is False          # rejects unknown fields such as stream_options
    call, _ = rows["mistral"].adapter.build_stream(rows["mistral"].operations["chat.completions"],
                                                   ExecuteParams(model="m", prompt="x"), "k")
    assert call.body["stream"] is True and "stream_options" not in call.body
    assert rows["symbia-labs"].operations["chat.completions"].streaming
    assert all(op.streaming for op in rows["anthropic"].operations.values())
