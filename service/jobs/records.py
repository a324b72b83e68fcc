"""A job's status record: one KV entry per job id (bucket `integrations-jobs`)."""

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson

from contracts.jobs import TERMINAL_STATUSES
from contracts.subjects import result_subject


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class JobRecord:
    id: str
    kind: str
    status: str                      # queued | running | succeeded | failed | cancelled
    org: str | None                  # None: rejected before its caller was known (visible to nobody)
    principal_id: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    result_status: int | None = None
    reply_to: str | None = None
    seq: int | None = None           # stream sequence of the job message that runs (or ran) it
    worker: str | None = None

    @classmethod
    def new(cls, job_id: str, kind: str, status: str, org: str | None, principal_id: str | None,
            reply_to: str | None) -> "JobRecord":
        return cls(id=job_id, kind=kind, status=status, org=org, principal_id=principal_id, created_at=time.time(),
                   reply_to=reply_to)

    @classmethod
    def from_json(cls, data: bytes) -> "JobRecord":
        return cls(**orjson.loads(data))

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def finish(self, status: str, result_status: int) -> None:
        self.status, self.result_status, self.finished_at = status, result_status, time.time()

    def info(self) -> dict:
        """The wire form (contracts.jobs.JobInfo), absent fields omitted."""
        view = {"id": self.id, "kind": self.kind, "status": self.status, "resultSubject": result_subject(self.id),
                "createdAt": _iso(self.created_at), "startedAt": _iso(self.started_at),
                "finishedAt": _iso(self.finished_at), "attempts": self.attempts,
                "resultStatus": self.result_status, "replyTo": self.reply_to}
        return {k: v for k, v in view.items() if v is not None}
