"""All settings of the worker and the supervisor, from the environment and `.env`.

Names listed in the README are part of the operator contract; several are fixed by the
original service or by SDK conventions (`OPENAI_BASE_URL` includes `/v1`, as the openai SDK
reads it).
"""

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
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

    # --- worker ----------------------------------------------------------------------------
    worker_concurrency: int = Field(256, ge=1, le=10_000, validation_alias="INTEGRATIONS_WORKER_CONCURRENCY")
    drain_timeout_s: float = Field(30.0, gt=0, validation_alias="INTEGRATIONS_DRAIN_TIMEOUT_S")
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

    # --- callers (local mode) --------------------------------------------------------------
    api_keys: str = Field("", validation_alias="INTEGRATIONS_API_KEYS", repr=False)
    default_org: str = Field("default", validation_alias="INTEGRATIONS_DEFAULT_ORG")

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
    usage_stream_replicas: int = Field(1, ge=1, le=5, validation_alias="INTEGRATIONS_USAGE_STREAM_REPLICAS")
    usage_duplicate_window_s: float = Field(120.0, gt=0, validation_alias="INTEGRATIONS_USAGE_DUPLICATE_WINDOW_S")
    usage_consumer: str = Field("usage-store", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                validation_alias="INTEGRATIONS_USAGE_CONSUMER")
    usage_batch_size: int = Field(1000, ge=1, le=10_000, validation_alias="INTEGRATIONS_USAGE_BATCH_SIZE")
    usage_buffer_max: int = Field(10_000, ge=1, validation_alias="INTEGRATIONS_USAGE_BUFFER_MAX")

    @field_validator("openai_base_url", "huggingface_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @cached_property
    def configured_api_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.api_keys.split(",") if k.strip())

    @property
    def key_store_path(self) -> Path:
        return self.data_dir / "api-keys.json"

    @property
    def usage_db_path(self) -> Path:
        return self.usage_db_file or self.data_dir / "usage.db"

    def timeout_for(self, operation: str) -> float:
        return self.operation_timeouts_s.get(operation, self.upstream_timeout_s)
