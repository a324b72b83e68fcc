"""Settings of the HTTP adapter (same variable names as the worker's; see README)."""

import ssl
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    host: str = Field("0.0.0.0", validation_alias=AliasChoices("INTEGRATIONS_HOST", "HOST"))
    port: int = Field(5007, ge=0, le=65535, validation_alias=AliasChoices("INTEGRATIONS_PORT", "PORT"))
    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias="NATS_URL")
    nats_creds: Path | None = Field(None, validation_alias="NATS_CREDS")
    nats_tls_ca: Path | None = Field(None, validation_alias="NATS_TLS_CA")
    nats_tls_cert: Path | None = Field(None, validation_alias="NATS_TLS_CERT")
    nats_tls_key: Path | None = Field(None, validation_alias="NATS_TLS_KEY")
    # Replicas of the claim-check object store when the api is the first to create it.
    js_replicas: int = Field(1, ge=1, le=5, validation_alias="INTEGRATIONS_JS_REPLICAS")
    log_level: str = Field("INFO", validation_alias="INTEGRATIONS_LOG_LEVEL")

    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, validation_alias="INTEGRATIONS_MAX_BODY_BYTES")
    # Longest a request may take end to end; the worker's upstream timeouts are shorter.
    request_timeout_s: float = Field(600.0, gt=0, validation_alias="INTEGRATIONS_REQUEST_TIMEOUT_S")
    # A worker sends a heartbeat every INTEGRATIONS_HEARTBEAT_S while busy; after this much
    # silence the adapter reports the worker as lost (503, retryable) instead of hanging.
    worker_silence_s: float = Field(10.0, gt=0, validation_alias="INTEGRATIONS_WORKER_SILENCE_S")
    bus_connect_wait_s: float = Field(5.0, ge=0, validation_alias="INTEGRATIONS_BUS_CONNECT_WAIT_S")
    ready_timeout_s: float = Field(1.0, gt=0, validation_alias="INTEGRATIONS_READY_TIMEOUT_S")
    drain_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_DRAIN_TIMEOUT_S")
    cors_origins: str = Field("", validation_alias="INTEGRATIONS_CORS_ORIGINS")
    # Chunks in flight per stream before the worker waits for this adapter (docs/STREAMING.md).
    stream_window: int = Field(64, ge=1, le=4096, validation_alias="INTEGRATIONS_STREAM_WINDOW")

    # --- MCP endpoint (docs/MCP.md) ---------------------------------------------------------
    # Browser origins allowed to call /api/integrations/mcp (requests without Origin always are):
    # comma-separated, `:*` matches any port. Empty: INTEGRATIONS_CORS_ORIGINS plus loopback origins.
    mcp_allowed_origins: str = Field("", validation_alias="INTEGRATIONS_MCP_ALLOWED_ORIGINS")
    # Host header values accepted by the MCP endpoint (DNS-rebinding protection), `:*` matches any
    # port. Empty: not checked (behind a proxy that sets Host).
    mcp_allowed_hosts: str = Field("", validation_alias="INTEGRATIONS_MCP_ALLOWED_HOSTS")
    # true: no Mcp-Session-Id on the 2025 protocol (api replicas without sticky routing); clients
    # then get no notifications/tools/list_changed (2026 clients still do, through subscriptions/listen).
    mcp_stateless: bool = Field(False, validation_alias="INTEGRATIONS_MCP_STATELESS")
    mcp_session_idle_s: float = Field(1800.0, gt=0, validation_alias="INTEGRATIONS_MCP_SESSION_IDLE_S")
    mcp_max_sessions: int = Field(10_000, ge=1, validation_alias="INTEGRATIONS_MCP_MAX_SESSIONS")
    # Interval of notifications/progress during a tools/call whose client sent a progress token.
    mcp_progress_s: float = Field(5.0, gt=0, validation_alias="INTEGRATIONS_MCP_PROGRESS_S")

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in (self.nats_url or "nats://127.0.0.1:4222").split(",") if s.strip()]

    def nats_tls_context(self) -> ssl.SSLContext | None:
        """TLS to NATS with a private CA (NATS_TLS_CA) and/or a client certificate (NATS_TLS_CERT,
        NATS_TLS_KEY); None: the client's default (TLS only for tls:// URLs, system CAs). The
        worker's Settings has the same method: the api imports no service code."""
        if not (self.nats_tls_ca or self.nats_tls_cert):
            return None
        context = ssl.create_default_context(cafile=str(self.nats_tls_ca) if self.nats_tls_ca else None)
        if self.nats_tls_cert:
            context.load_cert_chain(str(self.nats_tls_cert), str(self.nats_tls_key) if self.nats_tls_key else None)
        return context

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def mcp_origin_list(self) -> list[str]:
        configured = [o.strip() for o in self.mcp_allowed_origins.split(",") if o.strip()]
        loopback = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*",
                    "http://localhost", "http://127.0.0.1", "http://[::1]"]
        return configured or [*self.cors_origin_list, *loopback]

    @property
    def mcp_host_list(self) -> list[str]:
        return [h.strip() for h in self.mcp_allowed_hosts.split(",") if h.strip()]
