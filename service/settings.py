"""All settings of the worker and the supervisor, from the environment and `.env`.

Names listed in the README are part of the operator contract; several are fixed by the
original service or by SDK conventions (`OPENAI_BASE_URL` includes `/v1`, as the openai SDK
reads it).
"""

import os
import ssl
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- processes ------------------------------------------------------------------------
    host: str = Field("0.0.0.0", validation_alias=_env("INTEGRATIONS_HOST", "HOST"))
    port: int = Field(5007, ge=0, le=65535, validation_alias=_env("INTEGRATIONS_PORT", "PORT"))
    data_dir: Path = Field(Path(".data"), validation_alias="INTEGRATIONS_DATA_DIR")
    workers: int = Field(1, ge=1, le=64, validation_alias="INTEGRATIONS_WORKERS")
    log_level: str = Field("INFO", validation_alias="INTEGRATIONS_LOG_LEVEL")

    # --- NATS ------------------------------------------------------------------------------
    nats_url: str | None = Field(None, validation_alias="NATS_URL")
    nats_port: int = Field(0, ge=0, le=65535, validation_alias="INTEGRATIONS_NATS_PORT")
    nats_config: Path | None = Field(None, validation_alias="INTEGRATIONS_NATS_CONFIG")
    nats_creds: Path | None = Field(None, validation_alias="NATS_CREDS")
    nats_tls_ca: Path | None = Field(None, validation_alias="NATS_TLS_CA")
    # Client certificate and key for servers that verify clients (mutual TLS).
    nats_tls_cert: Path | None = Field(None, validation_alias="NATS_TLS_CERT")
    nats_tls_key: Path | None = Field(None, validation_alias="NATS_TLS_KEY")
    # Replicas of every stream, KV bucket and object store the workers create (3 in a cluster).
    js_replicas: int = Field(1, ge=1, le=5, validation_alias="INTEGRATIONS_JS_REPLICAS")

    # --- worker ----------------------------------------------------------------------------
    worker_concurrency: int = Field(256, ge=1, le=10_000, validation_alias="INTEGRATIONS_WORKER_CONCURRENCY")
    drain_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_DRAIN_TIMEOUT_S")
    # How workers take request-reply and stream messages: "direct" subscribes on the broker's
    # nats-py connection (about twice the messages per CPU second), "faststream" through
    # FastStream subscribers (handlers/lane.py, docs/BENCHMARKS.md).
    bus_lane: Literal["direct", "faststream"] = Field("direct", validation_alias="INTEGRATIONS_BUS_LANE")
    heartbeat_s: float = Field(2.0, gt=0, validation_alias="INTEGRATIONS_HEARTBEAT_S")

    # --- upstream HTTP ---------------------------------------------------------------------
    upstream_pool_size: int = Field(512, ge=1, validation_alias="INTEGRATIONS_UPSTREAM_POOL_SIZE")
    upstream_timeout_s: float = Field(120.0, gt=0, validation_alias="INTEGRATIONS_UPSTREAM_TIMEOUT_S")
    # Per-operation overrides, JSON: {"embeddings": 30, "responses": 300}
    operation_timeouts_s: dict[str, float] = Field(
        default_factory=dict, validation_alias="INTEGRATIONS_OPERATION_TIMEOUTS")
    upstream_max_response_bytes: int = Field(
        64 * 1024 * 1024, gt=0, validation_alias="INTEGRATIONS_UPSTREAM_MAX_RESPONSE_BYTES")

    # --- providers -------------------------------------------------------------------------
    openai_base_url: str = Field("https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(None, validation_alias="OPENAI_API_KEY", repr=False)
    openai_organization: str | None = Field(None, validation_alias="OPENAI_ORGANIZATION")
    huggingface_base_url: str = Field("https://router.huggingface.co", validation_alias="HUGGINGFACE_BASE_URL")
    huggingface_api_key: str | None = Field(
        None, validation_alias=_env("HUGGINGFACE_API_KEY", "HF_TOKEN"), repr=False)
    huggingface_text_generation_api: Literal["chat", "tgi"] = Field(
        "chat", validation_alias="HUGGINGFACE_TEXT_GENERATION_API")
    huggingface_embeddings_api: Literal["hf-inference", "openai", "tei"] = Field(
        "hf-inference", validation_alias="HUGGINGFACE_EMBEDDINGS_API")

    # --- more providers: Anthropic, symbia-labs, configured ones (docs/PROVIDERS.md) ----------
    # As the Anthropic SDK reads it: without /v1 (a trailing /v1 is tolerated and dropped).
    anthropic_base_url: str = Field("https://api.anthropic.com", validation_alias="ANTHROPIC_BASE_URL")
    anthropic_api_key: str | None = Field(None, validation_alias="ANTHROPIC_API_KEY", repr=False)
    anthropic_version: str = Field("2023-06-01", validation_alias="ANTHROPIC_VERSION")
    # max_tokens for a Claude model that models.json does not know (the API requires one).
    anthropic_default_max_tokens: int = Field(4096, gt=0, validation_alias="ANTHROPIC_DEFAULT_MAX_TOKENS")
    models_service_url: str = Field("http://localhost:5008", validation_alias="MODELS_SERVICE_URL")
    providers_file: Path | None = Field(None, validation_alias="INTEGRATIONS_PROVIDERS_FILE")
    # The same document as the providers file, as JSON (for containers without a mounted file).
    providers_json: str | None = Field(None, validation_alias="INTEGRATIONS_PROVIDERS", repr=False)
    # Packaged presets to enable (service/providers/presets.yaml): names, "all" or "none".
    provider_presets: str = Field("google,mistral,cohere,groq,together",
                                  validation_alias="INTEGRATIONS_PROVIDER_PRESETS")

    # --- callers (local mode) --------------------------------------------------------------
    api_keys: str = Field("", validation_alias="INTEGRATIONS_API_KEYS", repr=False)
    default_org: str = Field("default", validation_alias="INTEGRATIONS_DEFAULT_ORG")

    # --- identity, organizations, credentials, catalog (docs/IDENTITY.md) --------------------
    # Identity mode when set: callers are Identity's users, agents and API keys; provider keys
    # come from Identity. Unset: local mode (API keys above, optional JWTs, env/file keys).
    identity_service_url: str | None = Field(None, validation_alias="IDENTITY_SERVICE_URL")
    # The gateway's own Identity token, for credential lookups of callers without a token
    # Identity accepts (API-key principals, server-side sessions).
    service_token: str | None = Field(None, validation_alias="INTEGRATIONS_SERVICE_TOKEN", repr=False)
    identity_timeout_s: float = Field(2.0, gt=0, le=60, validation_alias="INTEGRATIONS_IDENTITY_TIMEOUT_S")
    auth_cache_ttl_s: float = Field(30.0, ge=0, validation_alias="INTEGRATIONS_AUTH_CACHE_TTL_S")
    auth_negative_cache_ttl_s: float = Field(5.0, ge=0, validation_alias="INTEGRATIONS_AUTH_NEGATIVE_CACHE_TTL_S")
    credential_cache_ttl_s: float = Field(30.0, ge=0, validation_alias="INTEGRATIONS_CREDENTIAL_CACHE_TTL_S")
    credential_negative_cache_ttl_s: float = Field(
        5.0, ge=0, validation_alias="INTEGRATIONS_CREDENTIAL_NEGATIVE_CACHE_TTL_S")
    cache_max_entries: int = Field(10_000, ge=1, validation_alias="INTEGRATIONS_CACHE_MAX_ENTRIES")
    # Local mode: JSON object org → provider → key (mode 600).
    credentials_file: Path | None = Field(None, validation_alias="INTEGRATIONS_CREDENTIALS_FILE")
    # Local mode JWT callers: HS256 with the secret, RS256/ES256 with keys from the JWKS URL.
    jwt_secret: str | None = Field(None, validation_alias="INTEGRATIONS_JWT_SECRET", repr=False)
    jwt_jwks_url: str | None = Field(None, validation_alias="INTEGRATIONS_JWT_JWKS_URL")
    jwt_audience: str | None = Field(None, validation_alias="INTEGRATIONS_JWT_AUDIENCE")
    jwt_issuer: str | None = Field(None, validation_alias="INTEGRATIONS_JWT_ISSUER")
    jwt_leeway_s: float = Field(30.0, ge=0, validation_alias="INTEGRATIONS_JWT_LEEWAY_S")
    jwt_jwks_ttl_s: float = Field(300.0, gt=0, validation_alias="INTEGRATIONS_JWT_JWKS_TTL_S")
    catalog_service_url: str | None = Field(None, validation_alias="CATALOG_SERVICE_URL")
    catalog_timeout_s: float = Field(3.0, gt=0, le=60, validation_alias="INTEGRATIONS_CATALOG_TIMEOUT_S")
    catalog_refresh_s: float = Field(300.0, gt=0, validation_alias="INTEGRATIONS_CATALOG_REFRESH_S")
    model_list_ttl_s: float = Field(300.0, ge=0, validation_alias="INTEGRATIONS_MODEL_LIST_TTL_S")
    model_list_timeout_s: float = Field(10.0, gt=0, validation_alias="INTEGRATIONS_MODEL_LIST_TIMEOUT_S")

    # --- registry and invoke (docs/REGISTRY.md) -------------------------------------------
    # Hosts that user-supplied URLs may reach although they resolve to non-public addresses:
    # comma-separated names, *.suffix wildcards, IPs or CIDRs (tests and local development).
    outbound_allow: str = Field("", validation_alias="INTEGRATIONS_OUTBOUND_ALLOW")
    # Commands a stdio MCP server may be started with: comma-separated; an entry is a command
    # (any arguments) or a full command line (exactly those arguments). Empty: stdio is refused.
    mcp_stdio_allow: str = Field("", validation_alias="INTEGRATIONS_MCP_STDIO_ALLOW")
    invoke_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_INVOKE_TIMEOUT_S")
    invoke_max_timeout_s: float = Field(120.0, gt=0, validation_alias="INTEGRATIONS_INVOKE_MAX_TIMEOUT_S")
    invoke_max_retries: int = Field(3, ge=0, le=10, validation_alias="INTEGRATIONS_INVOKE_MAX_RETRIES")
    invoke_max_redirects: int = Field(5, ge=0, le=20, validation_alias="INTEGRATIONS_INVOKE_MAX_REDIRECTS")
    spec_max_bytes: int = Field(32 * 1024 * 1024, gt=0, validation_alias="INTEGRATIONS_SPEC_MAX_BYTES")
    spec_fetch_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_SPEC_FETCH_TIMEOUT_S")
    mcp_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_MCP_TIMEOUT_S")
    mcp_idle_s: float = Field(300.0, gt=0, validation_alias="INTEGRATIONS_MCP_IDLE_S")
    # Internal Symbia services registered as read-only built-ins from <url>/docs/openapi.json,
    # JSON: {"identity": "http://identity:5001", "catalog": "http://catalog:5003"}. Trusted URLs.
    internal_services: dict[str, str] = Field(default_factory=dict, validation_alias="INTEGRATIONS_INTERNAL_SERVICES")
    # Local mode: credentials of registered integrations by integration key, JSON:
    # {"petstore": "<token>", "intranet": "user:password"} (the Identity service replaces it).
    integration_credentials: dict[str, str] = Field(
        default_factory=dict, validation_alias="INTEGRATIONS_CREDENTIALS", repr=False)

    # --- MCP server endpoint (docs/MCP.md) -------------------------------------------------
    # Tools per tools/list page (clients follow nextCursor).
    mcp_page_size: int = Field(100, ge=1, le=1000, validation_alias="INTEGRATIONS_MCP_PAGE_SIZE")

    # --- streaming and the OpenAI-compatible routes (docs/STREAMING.md) -----------------------
    # Chunks a requester may have unacknowledged; a requester asks for less with x-stream-window.
    stream_window: int = Field(64, ge=1, le=4096, validation_alias="INTEGRATIONS_STREAM_WINDOW")
    # A stream whose requester acknowledges nothing for this long is abandoned and its upstream
    # request cancelled (the requester died, or its client stopped reading).
    stream_ack_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_STREAM_ACK_TIMEOUT_S")
    # Provider of bare model names on /v1 routes (`gpt-4o-mini` = `openai/gpt-4o-mini`).
    openai_default_provider: str = Field("openai", validation_alias="INTEGRATIONS_OPENAI_DEFAULT_PROVIDER")

    # --- jobs (docs/JOBS.md) ---------------------------------------------------------------
    # Jobs this worker runs at once, apart from INTEGRATIONS_WORKER_CONCURRENCY (0: takes no jobs).
    job_concurrency: int = Field(16, ge=0, le=10_000, validation_alias="INTEGRATIONS_JOB_CONCURRENCY")
    # HMAC key shared by all workers; unset: generated once in the data dir (job-signing.key).
    job_signing_key: str | None = Field(None, min_length=32, validation_alias="INTEGRATIONS_JOB_SIGNING_KEY",
                                        repr=False)
    job_grant_ttl_s: float = Field(3600.0, gt=0, validation_alias="INTEGRATIONS_JOB_GRANT_TTL_S")
    job_max_age_s: float = Field(86_400.0, gt=0, validation_alias="INTEGRATIONS_JOB_MAX_AGE_S")
    job_results_ttl_s: float = Field(7 * 86_400.0, gt=0, validation_alias="INTEGRATIONS_JOB_RESULTS_TTL_S")
    job_ack_wait_s: float = Field(30.0, ge=1, validation_alias="INTEGRATIONS_JOB_ACK_WAIT_S")
    job_max_attempts: int = Field(3, ge=1, le=100, validation_alias="INTEGRATIONS_JOB_MAX_ATTEMPTS")
    # A job refused for now (rate limit, open circuit) runs again after the refusal's Retry-After,
    # waiting at most this long between tries, until it is older than INTEGRATIONS_JOB_MAX_AGE_S.
    job_defer_max_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_JOB_DEFER_MAX_S")
    job_duplicate_window_s: float = Field(900.0, gt=0, validation_alias="INTEGRATIONS_JOB_DUPLICATE_WINDOW_S")
    job_batch_max: int = Field(1000, ge=1, validation_alias="INTEGRATIONS_JOB_BATCH_MAX")
    # While request-reply calls are in flight and the worker's event loop runs this late (CPU
    # saturated), job slots start no new job (0: never hold jobs back).
    job_yield_lag_ms: float = Field(2.0, ge=0, validation_alias="INTEGRATIONS_JOB_YIELD_LAG_MS")

    # --- usage pipeline (docs/USAGE.md) ----------------------------------------------------
    # PostgreSQL store when set (postgresql://user:pass@host:5432/db), else SQLite in the data dir.
    database_url: str | None = Field(None, validation_alias="DATABASE_URL", repr=False)
    database_schema: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
                                        validation_alias="INTEGRATIONS_DATABASE_SCHEMA")
    usage_db_file: Path | None = Field(None, validation_alias="INTEGRATIONS_USAGE_DB")
    usage_events: bool = Field(True, validation_alias="INTEGRATIONS_USAGE_EVENTS")
    usage_stream: str = Field("INTEGRATIONS_USAGE", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                              validation_alias="INTEGRATIONS_USAGE_STREAM")
    usage_stream_max_age_s: float = Field(7 * 86400.0, gt=0, validation_alias="INTEGRATIONS_USAGE_STREAM_MAX_AGE_S")
    usage_stream_max_bytes: int = Field(1024 ** 3, gt=0, validation_alias="INTEGRATIONS_USAGE_STREAM_MAX_BYTES")
    # Overrides INTEGRATIONS_JS_REPLICAS for the usage stream only, when set.
    usage_stream_replicas: int | None = Field(None, ge=1, le=5, validation_alias="INTEGRATIONS_USAGE_STREAM_REPLICAS")
    usage_duplicate_window_s: float = Field(120.0, gt=0, validation_alias="INTEGRATIONS_USAGE_DUPLICATE_WINDOW_S")
    usage_consumer: str = Field("usage-store", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                validation_alias="INTEGRATIONS_USAGE_CONSUMER")
    usage_batch_size: int = Field(1000, ge=1, le=10_000, validation_alias="INTEGRATIONS_USAGE_BATCH_SIZE")
    # Events a store writer pulled but did not acknowledge (it was killed) go to the next writer
    # after this long; a batch commit must finish within it (else it is written again: deduplicated).
    usage_ack_wait_s: float = Field(60.0, ge=1, le=3600, validation_alias="INTEGRATIONS_USAGE_ACK_WAIT_S")
    usage_buffer_max: int = Field(10_000, ge=1, validation_alias="INTEGRATIONS_USAGE_BUFFER_MAX")
    # Usage rows (and hourly rollups) older than this many days are deleted by the store writer;
    # daily rollups are kept. 0: keep everything forever.
    usage_retention_days: int = Field(90, ge=0, le=36_500, validation_alias="INTEGRATIONS_USAGE_RETENTION_DAYS")

    # --- resilience: breakers, rate limits, retries, deadlines (docs/RESILIENCE.md) ------------
    breaker_enabled: bool = Field(True, validation_alias="INTEGRATIONS_BREAKER_ENABLED")
    # Consecutive provider-health failures (5xx, timeouts, network) that open a circuit.
    breaker_failure_threshold: int = Field(5, ge=1, validation_alias="INTEGRATIONS_BREAKER_FAILURE_THRESHOLD")
    # Or: this share of failures among at least RATE_MIN_REQUESTS calls within RATE_WINDOW_S
    # (seen by one worker); 0 turns the rate rule off.
    breaker_failure_rate: float = Field(0.5, ge=0, le=1, validation_alias="INTEGRATIONS_BREAKER_FAILURE_RATE")
    breaker_rate_window_s: float = Field(60.0, gt=0, validation_alias="INTEGRATIONS_BREAKER_RATE_WINDOW_S")
    breaker_rate_min_requests: int = Field(20, ge=1, validation_alias="INTEGRATIONS_BREAKER_RATE_MIN_REQUESTS")
    breaker_cooldown_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_BREAKER_COOLDOWN_S")
    # Successful probes (one at a time) that close a half-open circuit.
    breaker_success_threshold: int = Field(2, ge=1, validation_alias="INTEGRATIONS_BREAKER_SUCCESS_THRESHOLD")
    # One circuit per provider and credential (one tenant's bad key does not cut the others off).
    breaker_per_credential: bool = Field(False, validation_alias="INTEGRATIONS_BREAKER_PER_CREDENTIAL")

    rate_limit_enabled: bool = Field(True, validation_alias="INTEGRATIONS_RATE_LIMIT_ENABLED")
    # Per minute; 0 = unlimited. Provider limits: one number for every provider, or JSON
    # {"openai": 3000, "*": 1000} ("*": providers not listed).
    rate_limit_user_rpm: int = Field(100, ge=0, validation_alias="INTEGRATIONS_RATE_LIMIT_USER_RPM")
    rate_limit_org_rpm: int = Field(500, ge=0, validation_alias="INTEGRATIONS_RATE_LIMIT_ORG_RPM")
    rate_limit_provider_rpm: int | dict[str, int] = Field(
        default_factory=lambda: {"openai": 3000, "anthropic": 1000, "huggingface": 300, "*": 1000},
        validation_alias="INTEGRATIONS_RATE_LIMIT_PROVIDER_RPM")
    rate_limit_user_tpm: int = Field(0, ge=0, validation_alias="INTEGRATIONS_RATE_LIMIT_USER_TPM")
    rate_limit_org_tpm: int = Field(0, ge=0, validation_alias="INTEGRATIONS_RATE_LIMIT_ORG_TPM")
    rate_limit_provider_tpm: int | dict[str, int] = Field(0, validation_alias="INTEGRATIONS_RATE_LIMIT_PROVIDER_TPM")
    # Share of a limit one worker takes from the shared bucket at a time (at least one request
    # or token), and how long it keeps unused tokens before giving them back.
    rate_limit_lease: float = Field(0.05, ge=0, le=0.5, validation_alias="INTEGRATIONS_RATE_LIMIT_LEASE")
    rate_limit_lease_ttl_s: float = Field(1.0, gt=0, le=60, validation_alias="INTEGRATIONS_RATE_LIMIT_LEASE_TTL_S")

    # Retries of retryable upstream failures on execute (attempts = retries + 1 per provider).
    retry_max_retries: int = Field(2, ge=0, le=10, validation_alias="INTEGRATIONS_RETRY_MAX_RETRIES")
    retry_base_delay_s: float = Field(0.25, ge=0, validation_alias="INTEGRATIONS_RETRY_BASE_DELAY_S")
    # Longest single wait; an upstream Retry-After above it ends the retries (fallback or error).
    retry_max_delay_s: float = Field(8.0, ge=0, validation_alias="INTEGRATIONS_RETRY_MAX_DELAY_S")
    # Kept free before a caller's deadline to carry the reply back.
    deadline_margin_ms: int = Field(50, ge=0, le=5000, validation_alias="INTEGRATIONS_DEADLINE_MARGIN_MS")

    @field_validator("openai_base_url", "huggingface_base_url", "models_service_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _job_records_outlive_grants(self) -> "Settings":
        # A replayed job message is recognized by its status record until the record expires;
        # its grant must expire first (docs/JOBS.md, "What a publisher can and cannot do").
        if self.job_results_ttl_s < self.job_grant_ttl_s:
            raise ValueError("INTEGRATIONS_JOB_RESULTS_TTL_S must be at least INTEGRATIONS_JOB_GRANT_TTL_S")
        return self

    @field_validator("rate_limit_provider_rpm", "rate_limit_provider_tpm")
    @classmethod
    def _non_negative_limits(cls, value: int | dict[str, int]) -> int | dict[str, int]:
        values = value.values() if isinstance(value, dict) else (value,)
        if any(v < 0 for v in values):
            raise ValueError("rate limits are requests or tokens per minute: 0 (unlimited) or more")
        return value

    @field_validator("anthropic_base_url")
    @classmethod
    def _anthropic_root(cls, value: str) -> str:
        value = value.rstrip("/")
        return value.removesuffix("/v1")

    # The .env file as read at start-up, for variables that are not settings fields: the key
    # variables that the providers file names (MISTRAL_API_KEY...) and its ${VAR} references.
    _dotenv: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        env_file = values.get("_env_file", type(self).model_config.get("env_file"))
        super().__init__(**values)
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            self._dotenv = {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def env(self, name: str) -> str | None:
        """A variable of the process environment, else of the .env file (the same precedence as
        the settings themselves)."""
        return os.environ.get(name) or self._dotenv.get(name)

    @cached_property
    def configured_api_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.api_keys.split(",") if k.strip())

    @property
    def identity_mode(self) -> bool:
        return bool(self.identity_service_url)

    @property
    def key_store_path(self) -> Path:
        return self.data_dir / "api-keys.json"

    @property
    def outbound_allow_list(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.outbound_allow.split(",") if h.strip())

    @property
    def mcp_stdio_allow_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.mcp_stdio_allow.split(",") if c.strip())

    @property
    def job_signing_key_path(self) -> Path:
        return self.data_dir / "job-signing.key"

    @property
    def usage_db_path(self) -> Path:
        return self.usage_db_file or self.data_dir / "usage.db"

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in (self.nats_url or "nats://127.0.0.1:4222").split(",") if s.strip()]

    def nats_tls_context(self) -> ssl.SSLContext | None:
        """TLS to NATS with a private CA (NATS_TLS_CA) and/or a client certificate (NATS_TLS_CERT,
        NATS_TLS_KEY); None: the client's default (TLS only for tls:// URLs, system CAs)."""
        if not (self.nats_tls_ca or self.nats_tls_cert):
            return None
        context = ssl.create_default_context(cafile=str(self.nats_tls_ca) if self.nats_tls_ca else None)
        if self.nats_tls_cert:
            context.load_cert_chain(str(self.nats_tls_cert), str(self.nats_tls_key) if self.nats_tls_key else None)
        return context

    @property
    def usage_replicas(self) -> int:
        """INTEGRATIONS_USAGE_STREAM_REPLICAS when set, else INTEGRATIONS_JS_REPLICAS."""
        return self.usage_stream_replicas or self.js_replicas

    def timeout_for(self, operation: str) -> float:
        return self.operation_timeouts_s.get(operation, self.upstream_timeout_s)

    def provider_limit(self, table: int | dict[str, int], provider: str) -> int:
        """A provider's INTEGRATIONS_RATE_LIMIT_PROVIDER_RPM / _TPM value (0 = unlimited)."""
        if isinstance(table, int):
            return table
        return table.get(provider, table.get("*", 0))
