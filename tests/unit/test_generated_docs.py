"""Generated documents stay in sync with the code that generates them."""

import json
from pathlib import Path

from handlers.asyncapi import document, text

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_current():
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert committed == document(), "run `make asyncapi` and commit docs/asyncapi.json"


def test_asyncapi_output_is_deterministic():
    # Sorted keys: regenerating on any branch gives the same text, so docs/asyncapi.json only
    # changes (and conflicts) when the bus does.
    first = text()
    assert first == text()
    doc = json.loads(first)
    for keys in (doc["channels"], doc["operations"], doc["components"]["messages"], doc["components"]["schemas"]):
        assert list(keys) == sorted(keys)
    committed = (ROOT / "docs" / "asyncapi.json").read_text()
    assert committed.strip() == first, "run `make asyncapi` and commit docs/asyncapi.json"


def test_asyncapi_describes_execute_payload_and_reply():
    doc = document()
    assert doc["components"]["messages"]["integrations.v1.execute:SubscribeMessage"]["payload"]["$ref"].endswith(
        "/ExecuteRequest")
    assert doc["channels"]["integrations.v1.execute"]["bindings"]["nats"]["queue"] == "integrations"
    assert "reply" in doc["operations"]["integrations.v1.execute"]
