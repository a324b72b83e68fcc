"""Upstream error classification and the capability table (no network)."""

import pytest

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers.capabilities import build_provider_table, resolve_operation, validate_params
from service.providers.errors import classify_upstream, error_fields, redact
from service.settings import Settings


def classify(status, payload=None, headers=None):
    code, kind, message = error_fields(payload)
    return classify_upstream(provider="openai", operation="chat.completions", status=status, code=code,
                             error_type=kind, message=message, headers=headers or {})


@pytest.mark.parametrize("status,payload,category,http_status,retryable", [
    (401, {"error": {"message": "Incorrect API key provided: sk-abc", "type": "invalid_request_error",
                     "code": "invalid_api_key"}}, ErrorCategory.auth, 502, False),
    (403, {"error": "forbidden"}, ErrorCategory.auth, 502, False),
    (429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, ErrorCategory.rate_limit, 429, True),
    (429, {"error": {"message": "You exceeded your quota", "code": "insufficient_quota"}}, ErrorCategory.quota, 402,
     False),
    (402, {"error": "pay"}, ErrorCategory.quota, 402, False),
    (400, {"error": {"message": "flagged", "code": "content_policy_violation"}}, ErrorCategory.content_filter, 422,
     False),
    (400, {"error": {"message": "bad param", "type": "invalid_request_error"}}, ErrorCategory.validation, 400, False),
    (404, {"error": {"message": "The model does not exist", "code": "model_not_found"}}, ErrorCategory.validation,
     400, False),
    (500, {"error": "boom"}, ErrorCategory.provider, 502, True),
    (503, "<html>down</html>", ErrorCategory.provider, 502, True),
    (504, None, ErrorCategory.timeout, 504, True),
])
def test_classification_by_status_and_code(status, payload, category, http_status, retryable):
    err = classify(status, payload)
    envelope = err.envelope("req_1", 3)
    assert (err.category, err.status, envelope.retryable) == (category, http_status, retryable)
    assert envelope.upstream.statusCode == status
    assert envelope.category == envelope.errorCategory == category


def test_provider_rejecting_our_key_is_not_a_401_and_never_echoes_the_key():
    err = classify(401, {"error": {"message": "Incorrect API key provided: sk-proj-abcdef123456"}})
    assert err.status == 502 and err.reason == Reason.PROVIDER_REJECTED_CREDENTIALS
    assert "sk-" not in err.message


def test_retry_after_passes_through_from_seconds_or_milliseconds():
    assert classify(429, {}, {"retry-after": "7"}).headers == {"retry-after": "7"}
    assert classify(429, {}, {"retry-after-ms": "1500"}).headers == {"retry-after": "2"}


def test_redact_removes_key_like_strings():
    assert "sk-" not in redact("key sk-abcdefghijkl was wrong")
    assert "hf_" not in redact("token hf_abcdefghijk expired")
    assert "[REDACTED]" in redact("Authorization: Bearer abc.def")


@pytest.fixture
def table():
    return build_provider_table(Settings(_env_file=None))


def test_unknown_provider_and_unsupported_operation_are_validation_errors(table):
    with pytest.raises(GatewayError) as err:
        resolve_operation(table, "acme-llm", "chat.completions")
    assert err.value.status == 400 and err.value.reason == Reason.UNKNOWN_PROVIDER and "openai" in err.value.message
    with pytest.raises(GatewayError) as err:
        resolve_operation(table, "openai", "text.generation")
    assert err.value.status == 400 and err.value.reason == Reason.UNSUPPORTED_OPERATION


@pytest.mark.parametrize("provider,operation,params,fragment", [
    ("huggingface", "chat.completions", {"reasoningEffort": "low", "prompt": "x"}, "reasoningEffort"),
    ("openai", "embeddings", {"input": "x", "temperature": 1}, "temperature"),
    ("openai", "responses", {"input": "x", "seed": 3}, "seed"),
    ("openai", "chat.completions", {"prompt": "x", "compactMode": True}, "compactMode"),
    ("anthropic", "messages", {"prompt": "x", "seed": 1}, "seed"),
    ("anthropic", "chat.completions", {"prompt": "x", "responseFormat": "json"}, "responseFormat"),
    ("symbia-labs", "chat.completions", {"prompt": "x", "tools": [{"name": "t"}]}, "tools"),
    ("mistral", "chat.completions", {"prompt": "x", "seed": 1}, "seed"),
    ("mistral", "embeddings", {"input": "x", "dimensions": 8}, "dimensions"),
])
def test_parameters_a_provider_does_not_take_are_named(table, provider, operation, params, fragment):
    spec, op = resolve_operation(table, provider, operation)
    with pytest.raises(GatewayError) as err:
        validate_params(spec.name, op, ExecuteParams.model_validate({"model": "m", **params}))
    assert err.value.reason == Reason.UNSUPPORTED_PARAMETER and fragment in err.value.message


@pytest.mark.parametrize("provider,operation,params,fragment", [
    ("openai", "chat.completions", {}, "messages or prompt"),
    ("openai", "image.description", {"prompt": "x"}, "image"),
    ("huggingface", "embeddings", {}, "input or text"),
    ("openai", "embeddings", {"input": []}, "non-empty"),
    ("openai", "embeddings", {"input": [1.5, 2.5]}, "non-empty"),
    ("openai", "responses", {}, "input, messages or prompt"),
])
def test_missing_inputs(table, provider, operation, params, fragment):
    spec, op = resolve_operation(table, provider, operation)
    with pytest.raises(GatewayError) as err:
        validate_params(spec.name, op, ExecuteParams.model_validate({"model": "m", **params}))
    assert fragment in err.value.message and err.value.status == 400


def test_image_description_accepts_an_image_part(table):
    spec, op = resolve_operation(table, "openai", "image.description")
    validate_params(spec.name, op, ExecuteParams.model_validate({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]}))
