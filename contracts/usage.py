"""Usage: the event every execute, invoke and MCP tool call produces, and the routes that read
the usage store (`/usage`, `/usage/logs`, `/usage/by-user`, `/db/status`, `/db/export`).

Events are published to the JetStream stream `INTEGRATIONS_USAGE` on
`integrations.v1.events.usage.<orgId>`, one message per call, `Nats-Msg-Id` = event `id`
(docs/USAGE.md has a plain nats-py consumer). Query routes are GET routes: their bus request
is a JSON object of the query parameters (strings over HTTP; numbers are accepted on the bus).
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.http import API_PREFIX, QueryParam, Route

USAGE_EVENT_SCHEMA = 1
MAX_LOG_LIMIT = 500
MAX_DAYS = 3650


def usage_subject(org_id: str) -> str:
    """Org ids are one subject token (the gateway validates them), so consumers can filter
    one org with `integrations.v1.events.usage.<orgId>` or take all with `...usage.>`."""
    return f"{subjects.USAGE_EVENTS}.{org_id}"


class UsageEvent(BaseModel):
    """One call that got past authentication: success, upstream failure or rejection.

    Consumers should ignore fields they do not know (new fields are added without a schema
    bump; a breaking change bumps `schemaVersion`)."""

    model_config = ConfigDict(extra="ignore")

    schemaVersion: int = Field(USAGE_EVENT_SCHEMA, description="bumped only for breaking changes")
    id: str = Field(min_length=1, max_length=64,
                    description="event id and idempotency key (also the Nats-Msg-Id header); count each id once")
    timestamp: datetime = Field(description="when the reply was produced (UTC)")
    requestId: str
    kind: str = Field(description="execute | invoke | mcp")
    orgId: str
    principalId: str
    principalType: str = Field(description="user | agent | api_key | service")
    integration: str | None = Field(None, description="provider name (execute; after a fallback, the provider that "
                                                      "served the call) or integration key (invoke, mcp)")
    operation: str | None = None
    modelRequested: str | None = None
    modelServed: str | None = Field(None, description="the model the provider reported; null when the call failed")
    success: bool = Field(description="the reply's HTTP status was below 400")
    statusCode: int = Field(description="HTTP status of the reply the caller received")
    errorCategory: str | None = Field(None, description="the error envelope's category on failure")
    errorReason: str | None = Field(None, description="the error envelope's reason on failure")
    errorMessage: str | None = Field(None, description="the error envelope's message on failure (truncated)")
    durationMs: int = Field(ge=0)
    promptTokens: int = Field(0, ge=0)
    completionTokens: int = Field(0, ge=0)
    totalTokens: int = Field(0, ge=0)
    costMicros: int | None = Field(None, description="estimated cost in millionths of a USD from the model price "
                                                     "table; null when the model has no price")
    credentialSource: str | None = Field(None, description="personal | org-wide | service | env | none")
    credentialId: str | None = None
    callerService: str | None = Field(None, description="x-symbia-caller (else x-service-id) of the request")
    traceId: str | None = Field(None, description="x-trace-id, else the trace id of traceparent")
    streamed: bool = Field(False, description="answered as a stream (SSE or a stream subject)")
    partial: bool = Field(False, description="the stream stopped early (client gone, upstream failure)")
    usageEstimated: bool = Field(False, description="tokens counted by the gateway, not reported by the upstream")
    attempts: int = Field(0, ge=0, description="upstream attempts the gateway made, retries and fallbacks included; "
                                               "0: refused before any upstream call (validation, rate limit, open "
                                               "circuit)")


# --- queries ---------------------------------------------------------------------------------


class UsageQuery(BaseModel):
    """`days`: the window ends now and starts `days` × 24 h earlier."""

    model_config = ConfigDict(extra="ignore")  # unknown query parameters (cache busters) are ignored

    days: int = Field(30, ge=1, le=MAX_DAYS)
    integration: str | None = Field(None, min_length=1, max_length=256)


class UsageLogsQuery(UsageQuery):
    days: int = Field(7, ge=1, le=MAX_DAYS)
    userId: str | None = Field(None, min_length=1, max_length=256)
    limit: int = Field(100, ge=1, le=MAX_LOG_LIMIT)
    offset: int = Field(0, ge=0, le=1_000_000)


class DbExportRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- replies ---------------------------------------------------------------------------------


class UsagePeriod(BaseModel):
    days: int
    startDate: str


class UsageTotals(BaseModel):
    totalRequests: int
    successCount: int
    errorCount: int
    totalTokens: int
    promptTokens: int
    completionTokens: int
    totalCostMicros: int = Field(description="sum of the priced calls' estimated cost (unpriced calls add 0)")
    avgDurationMs: int
    uniqueUsers: int


class IntegrationUsage(BaseModel):
    integrationKey: str | None
    requestCount: int
    successCount: int
    errorCount: int
    totalTokens: int
    totalCostMicros: int


class UserUsage(BaseModel):
    userId: str
    requestCount: int
    totalTokens: int
    totalCostMicros: int


class UsageSummary(BaseModel):
    period: UsagePeriod
    summary: UsageTotals
    byIntegration: list[IntegrationUsage] = Field(description="by request count, descending")
    byUser: list[UserUsage] = Field(description="top 20 by request count")


class UsageLogRow(BaseModel):
    """The original's proxy-usage row (camelCase), plus the execution-log fields."""

    id: str
    userId: str
    orgId: str
    integrationKey: str | None
    operation: str | None
    credentialId: str | None
    requestId: str
    success: bool
    statusCode: int
    errorMessage: str | None
    durationMs: int
    inputTokens: int
    outputTokens: int
    totalTokens: int
    estimatedCostMicros: int | None
    metadata: dict[str, Any] | None = Field(description="on failure {errorCategory, reason}")
    timestamp: str
    kind: str
    principalType: str
    model: str | None = Field(description="served model, else the requested one")
    modelRequested: str | None
    errorCategory: str | None
    errorReason: str | None
    credentialSource: str | None
    callerService: str | None
    traceId: str | None
    streamed: bool
    partial: bool
    usageEstimated: bool


class UsageLogs(BaseModel):
    logs: list[UsageLogRow] = Field(description="newest first")
    limit: int
    offset: int


class UserUsageDetail(BaseModel):
    userId: str
    requestCount: int
    successCount: int
    errorCount: int
    totalTokens: int
    totalCostMicros: int
    avgDurationMs: int
    lastUsedAt: str


class UsageByUser(BaseModel):
    users: list[UserUsageDetail] = Field(description="every user of the window, by request count, descending")


class DbStatus(BaseModel):
    mode: Literal["sqlite", "postgres", "memory"]
    isMemory: bool
    persistsOnRestart: bool
    recommendation: str
    location: str = Field(description="SQLite file path, or PostgreSQL host:port/database (never credentials)")
    ready: bool = Field(description="the store is open and migrated")
    schemaVersion: int | None
    rowCount: int | None = Field(description="usage rows of the caller's organization still stored")
    oldestEvent: str | None = Field(description="timestamp of the caller's organization's oldest usage row")
    consumerLag: int | None = Field(description="events in the stream not yet committed to the store (all orgs)")
    bufferedEvents: int = Field(description="events the answering worker holds because JetStream did not "
                                            "acknowledge them yet")
    droppedEvents: int = Field(description="events the answering worker dropped since it started (buffer full)")
    retentionDays: int | None = Field(None, description="usage rows older than this many days are deleted "
                                                        "(INTEGRATIONS_USAGE_RETENTION_DAYS); 0 = kept forever")
    lastPruneAt: str | None = Field(None, description="when the store writer last finished a retention pass "
                                                      "(all organizations); null before the first one")
    lastPrunedRows: int | None = Field(None, description="usage rows that pass deleted (all organizations)")


class DbExportResult(BaseModel):
    success: bool
    message: str
    name: str | None = Field(None, description="the snapshot's file name in the data dir's exports folder")
    path: str | None = Field(None, description="the snapshot's path relative to the data dir")


_DAYS = QueryParam("days", "window in days, 1-3650 (default 30; logs: 7)", "integer")
_INTEGRATION = QueryParam("integration", "only this provider or integration key")

ROUTES = (
    Route(
        method="GET", path=f"{API_PREFIX}/usage", subject=subjects.USAGE_SUMMARY, tag="usage",
        summary="Usage summary of the caller's organization: totals, by integration, top users",
        request_model=UsageQuery, response_model=UsageSummary, query=(_DAYS, _INTEGRATION),
        description="Counts every execute, invoke and MCP call that got past authentication, including failures "
                    "and rejections, with tokens and estimated cost.",
        error_statuses=(400, 401, 403, 500, 503),
    ),
    Route(
        method="GET", path=f"{API_PREFIX}/usage/logs", subject=subjects.USAGE_LOGS, tag="usage",
        summary="Usage rows of the caller's organization, newest first",
        request_model=UsageLogsQuery, response_model=UsageLogs,
        query=(_DAYS, _INTEGRATION, QueryParam("userId", "only this principal"),
               QueryParam("limit", "rows per page, 1-500 (default 100)", "integer"),
               QueryParam("offset", "rows to skip (default 0)", "integer")),
        error_statuses=(400, 401, 403, 500, 503),
    ),
    Route(
        method="GET", path=f"{API_PREFIX}/usage/by-user", subject=subjects.USAGE_BY_USER, tag="usage",
        summary="Usage of the caller's organization per user",
        request_model=UsageQuery, response_model=UsageByUser, query=(_DAYS, _INTEGRATION),
        error_statuses=(400, 401, 403, 500, 503),
    ),
    Route(
        method="GET", path=f"{API_PREFIX}/db/status", subject=subjects.DB_STATUS, tag="usage",
        summary="Usage store: mode, location, rows and oldest event of the caller's organization, consumer lag",
        response_model=DbStatus, error_statuses=(401, 403, 500),
    ),
    Route(
        method="POST", path=f"{API_PREFIX}/db/export", subject=subjects.DB_EXPORT, tag="usage",
        summary="Admin: write a consistent snapshot of the SQLite usage store into the data dir's exports folder",
        request_model=DbExportRequest, response_model=DbExportResult,
        description="PostgreSQL mode answers success=false (data persists in PostgreSQL), as the original did.",
        error_statuses=(401, 403, 500, 503),
    ),
)
