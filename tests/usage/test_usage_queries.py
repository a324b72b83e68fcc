"""The usage and database routes against both stores: numbers for a known set of calls,
pagination and filters, org isolation, bad query values, export."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from contracts.usage import DbStatus, UsageByUser, UsageLogs, UsageSummary
from tests.conftest import CALLER_KEY
from tests.usage.conftest import new_org, stream_events


def iso(ms_ts: str) -> datetime:
    return datetime.fromisoformat(ms_ts.replace("Z", "+00:00"))


def ms(event_ts: str) -> str:
    """An event timestamp as the routes print it: milliseconds, Z."""
    return iso(event_ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
async def known_calls(gw, llmock):
    """Eight calls in a fresh org by two principals: six successes, an upstream failure and a
    rejection. Returns the org and its events as read from the stream."""
    org = new_org()
    for _ in range(3):
        assert (await gw.execute(org))[0] == 200
    embeddings = {"provider": "openai", "operation": "embeddings",
                  "params": {"model": "text-embedding-3-small", "input": ["a", "b"]}}
    status, _, _ = await gw.call("integrations.v1.execute", embeddings, org=org)
    assert status == 200
    llmock.scenario({"type": "fail", "status": 500})
    assert (await gw.execute(org))[0] == 502
    assert (await gw.execute(org, body={"provider": "no-such-provider"}))[0] == 400
    for _ in range(2):
        assert (await gw.execute(org, key=gw.second_key))[0] == 200
    await gw.wait_rows(org, 8)
    events = await stream_events(gw.nc, org)
    assert len(events) == 8
    return org, events


def totals(events: list[dict]) -> dict:
    ok = sum(e["success"] for e in events)
    return {"requests": len(events), "ok": ok, "errors": len(events) - ok,
            "tokens": sum(e["totalTokens"] for e in events), "cost": sum(e["costMicros"] or 0 for e in events),
            "avg": round(sum(e["durationMs"] for e in events) / len(events))}


async def test_summary_numbers(gw, known_calls):
    org, events = known_calls
    body = await gw.summary(org)
    UsageSummary.model_validate(body)
    want = totals(events)
    s = body["summary"]
    assert (s["totalRequests"], s["successCount"], s["errorCount"]) == (8, 6, 2)
    assert (s["totalTokens"], s["totalCostMicros"], s["avgDurationMs"]) == (want["tokens"], want["cost"], want["avg"])
    assert s["totalTokens"] > 0 and s["totalCostMicros"] > 0 and s["uniqueUsers"] == 2
    assert s["promptTokens"] == sum(e["promptTokens"] for e in events)
    assert body["period"]["days"] == 30
    assert abs(iso(body["period"]["startDate"]) - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)

    openai = [e for e in events if e["integration"] == "openai"]
    assert body["byIntegration"] == [
        {"integrationKey": "openai", "requestCount": 7, "successCount": 6, "errorCount": 1,
         "totalTokens": totals(openai)["tokens"], "totalCostMicros": totals(openai)["cost"]},
        {"integrationKey": "no-such-provider", "requestCount": 1, "successCount": 0, "errorCount": 1, "totalTokens": 0,
         "totalCostMicros": 0},
    ]
    first, second = body["byUser"]
    assert (first["userId"], first["requestCount"]) == ("config-key-1", 6)
    assert second["userId"].startswith("key:") and second["requestCount"] == 2
    assert second["totalTokens"] == totals([e for e in events if e["principalId"] == second["userId"]])["tokens"]

    only_unknown = await gw.summary(org, integration="no-such-provider")
    assert only_unknown["summary"]["totalRequests"] == 1 and only_unknown["summary"]["uniqueUsers"] == 1
    empty = await gw.summary(new_org(), days="7")
    assert empty["summary"] == {"totalRequests": 0, "successCount": 0, "errorCount": 0, "totalTokens": 0,
                                "promptTokens": 0, "completionTokens": 0, "totalCostMicros": 0, "avgDurationMs": 0,
                                "uniqueUsers": 0}
    assert empty["byIntegration"] == [] and empty["byUser"] == []


async def test_logs_pages_and_filters(gw, known_calls):
    org, events = known_calls
    by_id = {e["id"]: e for e in events}
    status, body, _ = await gw.call("integrations.v1.usage.logs", {}, org=org)
    assert status == 200 and body["limit"] == 100 and body["offset"] == 0
    UsageLogs.model_validate(body)
    rows = body["logs"]
    assert len(rows) == 8 and [r["timestamp"] for r in rows] == sorted((r["timestamp"] for r in rows), reverse=True)
    for row in rows:
        event = by_id[row["id"]]
        assert (row["requestId"], row["userId"], row["orgId"], row["integrationKey"]) == (
            event["requestId"], event["principalId"], org, event["integration"])
        assert (row["statusCode"], row["success"], row["totalTokens"], row["estimatedCostMicros"]) == (
            event["statusCode"], event["success"], event["totalTokens"], event["costMicros"])
        assert (row["inputTokens"], row["outputTokens"]) == (event["promptTokens"], event["completionTokens"])
        assert row["metadata"] == (None if event["success"] else
                                   {"errorCategory": event["errorCategory"], "reason": event["errorReason"]})
    failed = next(r for r in rows if r["statusCode"] == 502)
    assert failed["errorCategory"] == "provider" and failed["errorMessage"] and failed["model"] == "gpt-4o-mini"

    page1 = (await gw.call("integrations.v1.usage.logs", {"limit": 3}, org=org))[1]["logs"]
    page2 = (await gw.call("integrations.v1.usage.logs", {"limit": "3", "offset": "3"}, org=org))[1]["logs"]
    assert [r["id"] for r in page1 + page2] == [r["id"] for r in rows[:6]]

    second = next(e["principalId"] for e in events if e["principalId"] != "config-key-1")
    mine = (await gw.call("integrations.v1.usage.logs", {"userId": second}, org=org))[1]["logs"]
    assert len(mine) == 2 and {r["userId"] for r in mine} == {second}
    unknown = (await gw.call("integrations.v1.usage.logs", {"integration": "no-such-provider"}, org=org))[1]["logs"]
    assert [r["errorReason"] for r in unknown] == ["unknown_provider"]


async def test_by_user(gw, known_calls):
    org, events = known_calls
    status, body, _ = await gw.call("integrations.v1.usage.by-user", {"days": 1}, org=org)
    assert status == 200
    UsageByUser.model_validate(body)
    first, second = body["users"]
    mine = [e for e in events if e["principalId"] == "config-key-1"]
    want = totals(mine)
    assert first == {
        "userId": "config-key-1", "requestCount": 6, "successCount": 4, "errorCount": 2, "totalTokens": want["tokens"],
        "totalCostMicros": want["cost"], "avgDurationMs": want["avg"],
        "lastUsedAt": ms(max(e["timestamp"] for e in mine))}
    assert second["requestCount"] == 2 and second["errorCount"] == 0


async def test_org_isolation(gw, known_calls):
    org, _ = known_calls
    other = new_org()
    assert (await gw.execute(other))[0] == 200
    await gw.wait_rows(other, 1)
    assert (await gw.summary(org))["summary"]["totalRequests"] == 8
    logs = (await gw.call("integrations.v1.usage.logs", {}, org=other))[1]["logs"]
    assert len(logs) == 1 and logs[0]["orgId"] == other
    status, body, _ = await gw.call("integrations.v1.db.status", org=other)
    assert status == 200 and body["rowCount"] == 1


async def test_db_status(gw, known_calls):
    org, events = known_calls
    status, body, _ = await gw.call("integrations.v1.db.status", org=org)
    assert status == 200
    DbStatus.model_validate(body)
    assert body["isMemory"] is False and body["persistsOnRestart"] is True and body["ready"] is True
    assert body["rowCount"] == 8 and body["schemaVersion"] == 2 and body["consumerLag"] == 0
    assert body["oldestEvent"] == ms(min(e["timestamp"] for e in events))
    assert body["bufferedEvents"] == 0 and body["droppedEvents"] == 0
    # The elected writer ran its start-up retention pass (default 90 days): nothing was old enough.
    for _ in range(100):
        if body["lastPruneAt"] is not None:
            break
        await asyncio.sleep(0.05)
        body = (await gw.call("integrations.v1.db.status", org=org))[1]
    assert body["retentionDays"] == 90 and body["lastPruneAt"] is not None and body["lastPrunedRows"] == 0
    if gw.settings.database_url:
        assert body["mode"] == "postgres" and body["recommendation"] == "Data persists automatically in PostgreSQL"
        assert body["location"].startswith("127.0.0.1:5432/test (schema usage_test_") and "postgres@" not in body[
            "location"]
    else:
        assert body["mode"] == "sqlite" and body["location"] == str(gw.settings.usage_db_path)


async def test_export_is_admin_only_and_readable(gw, known_calls):
    org, _ = known_calls
    status, body, _ = await gw.call("integrations.v1.db.export", {}, org=org)
    assert status == 403 and body["reason"] == "admin_required" and body["category"] == "auth"
    status, body, _ = await gw.call("integrations.v1.db.export", b"", key=gw.admin_key, org=org)
    assert status == 200, body
    if gw.settings.database_url:
        assert body == {"success": False, "message": "Database is using PostgreSQL - no export needed, data "
                                                     "persists automatically"}
        return
    assert body["success"] is True and body["path"] == f"exports/{body['name']}" and "/" not in body["name"]
    snapshot = gw.settings.data_dir / "exports" / body["name"]
    with sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count = conn.execute("SELECT count(*) FROM usage_events WHERE org_id = ?", (org,)).fetchone()[0]
        rollup = conn.execute("SELECT sum(requests) FROM usage_rollup_daily WHERE org_id = ?", (org,)).fetchone()[0]
    assert count == rollup == 8
    assert CALLER_KEY not in snapshot.read_bytes().decode("latin-1")


@pytest.mark.parametrize("path,query", [
    ("/usage", "days=-1"), ("/usage", "days=0"), ("/usage", "days=abc"), ("/usage", "days=1.5"),
    ("/usage", "days=99999"), ("/usage/logs", "limit=501"), ("/usage/logs", "limit=0"), ("/usage/logs", "offset=-1"),
    ("/usage/logs", "limit=ten"), ("/usage/by-user", "days="), ("/usage", "integration="),
])
async def test_bad_query_values_are_400(http, path, query):
    response = await http.get(f"/api/integrations{path}?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["category"] == "validation" and body["reason"] == "invalid_request" and body["success"] is False


async def test_http_routes_and_their_alias(http):
    org = new_org()
    response = await http.post("/api/integrations/execute", headers={"x-org-id": org}, json={
        "provider": "openai", "operation": "chat.completions", "params": {"model": "gpt-4o-mini", "prompt": "hi"}})
    assert response.status_code == 200
    for _ in range(200):
        usage = (await http.get("/api/integrations/usage?days=30&foo=ignored", headers={"x-org-id": org})).json()
        if usage["summary"]["totalRequests"]:
            break
        await asyncio.sleep(0.05)
    assert usage["summary"]["totalRequests"] == 1 and usage["summary"]["totalTokens"] > 0
    assert usage["summary"]["totalCostMicros"] > 0
    for path in ("/api/api/integrations/usage/logs?limit=500", "/api/integrations/usage/by-user",
                 "/api/integrations/db/status"):
        assert (await http.get(path, headers={"x-org-id": org})).status_code == 200
    assert (await http.post("/api/integrations/db/export")).status_code == 403
    assert (await http.get("/api/integrations/usage", headers={"x-api-key": "wrong"})).status_code == 401


async def test_a_restricted_key_reads_only_its_org(http, acme_key):
    response = await http.get("/api/integrations/usage", headers={"x-api-key": acme_key, "x-org-id": "globex"})
    assert response.status_code == 403 and response.json()["reason"] == "org_forbidden"
    response = await http.get("/api/integrations/usage", headers={"x-api-key": acme_key})
    assert response.status_code == 200


async def test_a_streamed_call_is_one_usage_row_marked_streamed(http):
    org = new_org()
    response = await http.post("/api/integrations/execute", headers={"x-org-id": org}, json={
        "provider": "openai", "operation": "chat.completions", "stream": True,
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}})
    assert response.status_code == 200 and "event: done" in response.text
    for _ in range(200):
        logs = (await http.get("/api/integrations/usage/logs", headers={"x-org-id": org})).json()["logs"]
        if logs:
            break
        await asyncio.sleep(0.05)
    (row,) = logs
    assert row["streamed"] is True and row["partial"] is False and row["success"] is True
    assert row["totalTokens"] > 0 and row["integrationKey"] == "openai"


async def test_invoke_calls_are_usage_rows_of_kind_invoke(http):
    org = new_org()
    headers = {"x-org-id": org}
    response = await http.post("/api/integrations/invoke", headers=headers, json={
        "operation": "integrations.openai.chat.completions.create",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}})
    assert response.status_code == 200, response.text
    missing = await http.post("/api/integrations/invoke", headers=headers, json={"operation": "integrations.nope.x"})
    assert missing.status_code >= 400
    for _ in range(200):
        logs = (await http.get("/api/integrations/usage/logs", headers=headers)).json()["logs"]
        if len(logs) == 2:
            break
        await asyncio.sleep(0.05)
    ok = next(row for row in logs if row["success"])
    failed = next(row for row in logs if not row["success"])
    assert ok["kind"] == "invoke" and ok["integrationKey"] == "openai" and ok["totalTokens"] > 0
    assert ok["estimatedCostMicros"] is not None and ok["operation"] == "integrations.openai.chat.completions.create"
    assert failed["kind"] == "invoke" and failed["statusCode"] == missing.status_code and failed["success"] is False
    summary = (await http.get("/api/integrations/usage", headers=headers)).json()
    assert summary["summary"]["totalRequests"] == 2 and summary["summary"]["totalCostMicros"] > 0
