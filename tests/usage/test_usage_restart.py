"""PostgreSQL keeps usage across a restart of everything else: new worker, new NATS server
(an empty stream), new data dir; only DATABASE_URL and the schema are the same."""

from tests.usage.conftest import gateway, new_org, new_schema


async def test_postgres_usage_survives_a_restart(llmock):
    schema, org = new_schema(), new_org()
    async with gateway("postgres", llmock.base_url, database_schema=schema) as before:
        replies = [(await before.execute(org))[1] for _ in range(3)]
        await before.wait_rows(org, 3)
    async with gateway("postgres", llmock.base_url, database_schema=schema) as after:
        body = await after.summary(org)
        status, db, _ = await after.call("integrations.v1.db.status", org=org)
    assert body["summary"]["totalRequests"] == 3
    assert body["summary"]["totalTokens"] == sum(r["data"]["usage"]["totalTokens"] for r in replies)
    assert body["summary"]["totalCostMicros"] > 0
    assert status == 200 and db["mode"] == "postgres" and db["rowCount"] == 3 and db["schemaVersion"] == 2
