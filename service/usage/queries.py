"""Command handlers of the usage and database routes. Every answer is scoped to the caller's
resolved organization; the window of `days` ends now."""

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from contracts.envelope import ErrorCategory, Reason
from contracts.usage import DbExportRequest, UsageLogsQuery, UsageQuery
from service.auth.access import Access, require_admin
from service.commands import Command, Reply
from service.errors import GatewayError
from service.usage.pipeline import UsagePipeline
from service.usage.store import EVENT_COLUMNS, Combo, StoreUnavailable, Window

TOP_USERS = 20
POSTGRES_EXPORT_MESSAGE = "Database is using PostgreSQL - no export needed, data persists automatically"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def store_unavailable() -> GatewayError:
    return GatewayError("The usage store is unavailable; retry shortly", ErrorCategory.internal, status=503,
                        retryable=True, reason=Reason.STORE_UNAVAILABLE)


class _Totals:
    __slots__ = ("completion", "cost", "duration", "last", "prompt", "requests", "successes", "tokens")

    def __init__(self) -> None:
        self.requests = self.successes = self.prompt = self.completion = self.tokens = self.cost = self.duration = 0
        self.last: datetime | None = None

    def add(self, c: Combo) -> None:
        self.requests += c.requests
        self.successes += c.successes
        self.prompt += c.prompt_tokens
        self.completion += c.completion_tokens
        self.tokens += c.total_tokens
        self.cost += c.cost_micros
        self.duration += c.duration_ms
        self.last = c.last_ts if self.last is None else max(self.last, c.last_ts)

    @property
    def avg_duration(self) -> int:
        return round(self.duration / self.requests) if self.requests else 0


def _group(combos: Iterable[Combo], key) -> list[tuple[object, _Totals]]:
    groups: dict[object, _Totals] = {}
    for combo in combos:
        groups.setdefault(key(combo), _Totals()).add(combo)
    return sorted(groups.items(), key=lambda kv: (-kv[1].requests, str(kv[0] or "")))


def summary_body(combos: list[Combo], days: int, window: Window) -> dict:
    total = _Totals()
    for combo in combos:
        total.add(combo)
    users = _group(combos, lambda c: c.principal_id)
    return {
        "period": {"days": days, "startDate": iso(window.since)},
        "summary": {
            "totalRequests": total.requests, "successCount": total.successes,
            "errorCount": total.requests - total.successes, "totalTokens": total.tokens,
            "promptTokens": total.prompt, "completionTokens": total.completion, "totalCostMicros": total.cost,
            "avgDurationMs": total.avg_duration, "uniqueUsers": len(users),
        },
        "byIntegration": [
            {"integrationKey": key, "requestCount": t.requests, "successCount": t.successes,
             "errorCount": t.requests - t.successes, "totalTokens": t.tokens, "totalCostMicros": t.cost}
            for key, t in _group(combos, lambda c: c.integration)
        ],
        "byUser": [
            {"userId": key, "requestCount": t.requests, "totalTokens": t.tokens, "totalCostMicros": t.cost}
            for key, t in users[:TOP_USERS]
        ],
    }


def by_user_body(combos: list[Combo]) -> dict:
    return {"users": [
        {"userId": key, "requestCount": t.requests, "successCount": t.successes,
         "errorCount": t.requests - t.successes, "totalTokens": t.tokens, "totalCostMicros": t.cost,
         "avgDurationMs": t.avg_duration, "lastUsedAt": iso(t.last) if t.last else None}
        for key, t in _group(combos, lambda c: c.principal_id)
    ]}


def log_row(row: tuple) -> dict:
    r = dict(zip(EVENT_COLUMNS, row, strict=True))
    failed = not r["success"]
    return {
        "id": r["id"], "userId": r["principal_id"], "orgId": r["org_id"], "integrationKey": r["integration"],
        "operation": r["operation"], "credentialId": r["credential_id"], "requestId": r["request_id"],
        "success": r["success"], "statusCode": r["status_code"], "errorMessage": r["error_message"],
        "durationMs": r["duration_ms"], "inputTokens": r["prompt_tokens"], "outputTokens": r["completion_tokens"],
        "totalTokens": r["total_tokens"], "estimatedCostMicros": r["cost_micros"],
        "metadata": {"errorCategory": r["error_category"], "reason": r["error_reason"]} if failed else None,
        "timestamp": iso(r["ts"]), "kind": r["kind"], "principalType": r["principal_type"],
        "model": r["model_served"] or r["model_requested"], "modelRequested": r["model_requested"],
        "errorCategory": r["error_category"], "errorReason": r["error_reason"],
        "credentialSource": r["credential_source"], "callerService": r["caller_service"], "traceId": r["trace_id"],
        "streamed": r["streamed"], "partial": r["partial"], "usageEstimated": r["usage_estimated"],
    }


class UsageQueries:
    request_id_prefix = "req"

    def __init__(self, access: Access, usage: UsagePipeline, exports_dir: Path) -> None:
        self._access = access
        self._usage = usage
        self._exports_dir = exports_dir

    async def _store(self):
        if not self._usage.store_ready.is_set():
            raise store_unavailable()
        return self._usage.store

    async def summary(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        query = UsageQuery.model_validate_json(command.body or b"{}")
        window = Window.ending_now(query.days)
        store = await self._store()
        try:
            combos = await store.combos(caller.org, window, query.integration)
        except StoreUnavailable:
            raise store_unavailable() from None
        return command.json_reply(200, summary_body(combos, query.days, window))

    async def by_user(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        query = UsageQuery.model_validate_json(command.body or b"{}")
        store = await self._store()
        try:
            combos = await store.combos(caller.org, Window.ending_now(query.days), query.integration)
        except StoreUnavailable:
            raise store_unavailable() from None
        return command.json_reply(200, by_user_body(combos))

    async def logs(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        query = UsageLogsQuery.model_validate_json(command.body or b"{}")
        store = await self._store()
        try:
            rows = await store.logs(caller.org, Window.ending_now(query.days).since, query.integration, query.userId,
                                    query.limit, query.offset)
        except StoreUnavailable:
            raise store_unavailable() from None
        return command.json_reply(200, {"logs": [log_row(r) for r in rows], "limit": query.limit,
                                        "offset": query.offset})

    async def db_status(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        usage = self._usage
        store = usage.store
        count = oldest = pruned = None
        ready = usage.store_ready.is_set()
        if ready:
            try:
                count, oldest_ts = await store.org_stats(caller.org)
                oldest = iso(oldest_ts) if oldest_ts else None
                pruned = await store.last_prune()
            except StoreUnavailable:
                ready = False
        if store.mode == "postgres":
            recommendation = "Data persists automatically in PostgreSQL"
        else:
            recommendation = ("Data persists in the SQLite file; set DATABASE_URL to use PostgreSQL when workers "
                              "run on several hosts")
        return command.json_reply(200, {
            "mode": store.mode, "isMemory": False, "persistsOnRestart": True, "recommendation": recommendation,
            "location": store.location, "ready": ready, "schemaVersion": store.schema_version,
            "rowCount": count, "oldestEvent": oldest, "consumerLag": await usage.consumer_lag(),
            "bufferedEvents": usage.publisher.buffered, "droppedEvents": usage.publisher.dropped,
            "retentionDays": usage.pruner.retention_days,
            "lastPruneAt": iso(pruned.at) if pruned else None, "lastPrunedRows": pruned.events if pruned else None,
        })

    async def db_export(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        require_admin(caller, "export the usage database")
        DbExportRequest.model_validate_json(command.body or b"{}")
        store = await self._store()
        try:
            name = await store.export(self._exports_dir)
        except StoreUnavailable:
            raise store_unavailable() from None
        if name is None:
            return command.json_reply(200, {"success": False, "message": POSTGRES_EXPORT_MESSAGE})
        return command.json_reply(200, {"success": True, "message": "Database exported successfully", "name": name,
                                        "path": f"{self._exports_dir.name}/{name}"})
