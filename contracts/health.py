"""Health replies."""

from pydantic import BaseModel


class HealthStatus(BaseModel):
    status: str
    timestamp: str
    checks: dict[str, dict[str, str]] | None = None


class WorkerPing(BaseModel):
    """Reply of `integrations.v1.health.ping`."""

    status: str = "ok"
    worker: str
    version: str
