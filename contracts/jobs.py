"""Jobs: commands that run without a waiting caller, and their results as events (docs/JOBS.md).

A job is an execute, invoke or register command queued durably in JetStream. It runs
the same handler as its request-reply twin, and its result (the very body and status the twin
would reply) is published on `integrations.v1.results.<id>`. Over HTTP a batch is submitted with
`POST /api/integrations/jobs` and polled with `GET /api/integrations/jobs/{id}`.
"""

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts import subjects
from contracts.http import API_PREFIX, Route

# A job id is a NATS subject token and a KV key: letters, digits, '_' and '-'.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID = re.compile(JOB_ID_PATTERN)
_SUBJECT = re.compile(r"^[^.\s*>]+(\.[^.\s*>]+)*$")
# Results go to results.<id> for every job; a replyTo inside the gateway's namespace could
# forge another job's result or command, and `$` subjects belong to the server.
_RESERVED_REPLY_PREFIXES = (f"{subjects.PREFIX.split('.')[0]}.", "$")

JobKind = Literal["execute", "invoke", "register"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def reply_subject_problem(subject: str) -> str | None:
    """Why `subject` cannot receive results (None when it can)."""
    if len(subject) > 256 or not _SUBJECT.match(subject):
        return "replyTo must be a NATS subject without wildcards or spaces (at most 256 characters)"
    if subject.startswith(_RESERVED_REPLY_PREFIXES):
        return "replyTo may not name an integrations.* or $ subject"
    return None


class JobSpec(BaseModel):
    """One command of a batch."""

    model_config = ConfigDict(extra="forbid")

    kind: JobKind = Field("execute", description="which request-reply twin runs the job")
    request: dict[str, Any] = Field(description="the body the twin takes: an ExecuteRequest (execute), "
                                                "InvokeRequest (invoke) or RegisterRequest (register)")
    id: str | None = Field(None, pattern=JOB_ID_PATTERN,
                           description="idempotency key and job id; default: generated. Use a random value "
                                       "(ids are global: an id another organization used is a 409)")
    replyTo: str | None = Field(None, description="a NATS subject that also receives the result")

    @field_validator("replyTo")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        if value is not None and (problem := reply_subject_problem(value)):
            raise ValueError(problem)
        return value


class JobBatch(BaseModel):
    """`{"jobs": [JobSpec, ...]}`; a bare JSON array of JobSpec is accepted too."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"jobs": data} if isinstance(data, list) else data


class JobRef(BaseModel):
    """Path (and ignored query) parameters of `GET` / `DELETE /api/integrations/jobs/{id}`."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=JOB_ID_PATTERN)


class GrantRequest(BaseModel):
    """`integrations.v1.jobs.grant` (bus only)."""

    model_config = ConfigDict(extra="forbid")

    ttlSeconds: int | None = Field(None, gt=0, description="at most INTEGRATIONS_JOB_GRANT_TTL_S (the default)")


# --- replies ---------------------------------------------------------------------------------


class JobInfo(BaseModel):
    id: str
    kind: JobKind
    status: JobStatus
    resultSubject: str = Field(description="integrations.v1.results.<id>")
    createdAt: str | None = Field(None, description="when the gateway first saw the job (ISO 8601)")
    startedAt: str | None = None
    finishedAt: str | None = None
    attempts: int = Field(0, description="deliveries to a worker (more than 1 after a worker was lost)")
    resultStatus: int | None = Field(None, description="HTTP status of the result, once finished")
    replyTo: str | None = None
    duplicate: bool | None = Field(None, description="submit only: the id was already known; nothing was queued")


class JobsAccepted(BaseModel):
    """202 reply of `POST /api/integrations/jobs`: one entry per submitted job, in order."""

    success: Literal[True] = True
    jobs: list[JobInfo]
    requestId: str
    durationMs: int


class JobView(JobInfo):
    """Reply of `GET` and `DELETE /api/integrations/jobs/{id}`."""

    success: Literal[True] = True
    result: Any = Field(None, description="once finished: the body the request-reply twin returned "
                                          "(success reply or error envelope), status in resultStatus")


class JobGrant(BaseModel):
    """Reply of `integrations.v1.jobs.grant`: lets a NATS client publish jobs straight to the stream."""

    success: Literal[True] = True
    grant: str = Field(description="send as header x-job-grant with every job (not a credential by itself)")
    jobKey: str = Field(description="hex HMAC key that signs each job (x-job-signature); keep it secret")
    org: str
    principalId: str
    expiresAt: str


ROUTES = (
    Route(method="POST", path=f"{API_PREFIX}/jobs", subject=subjects.JOBS_SUBMIT, tag="jobs",
          summary="Submit a batch of commands to run as jobs; 202 with their ids",
          description="Each job runs later, like its request-reply twin (execute, invoke or register), and "
                      "publishes its result on integrations.v1.results.<id>. Poll GET /api/integrations/jobs/{id}.",
          request_model=JobBatch, response_model=JobsAccepted, success_status=202,
          error_statuses=(400, 401, 403, 409, 413, 500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/jobs/{{id}}", subject=subjects.JOBS_GET, tag="jobs",
          summary="A job's status, and its result once finished (jobs of the caller's organization)",
          request_model=JobRef, response_model=JobView, error_statuses=(400, 401, 403, 404, 500, 503)),
    Route(method="DELETE", path=f"{API_PREFIX}/jobs/{{id}}", subject=subjects.JOBS_CANCEL, tag="jobs",
          summary="Cancel a queued job (409 once it runs)",
          request_model=JobRef, response_model=JobView, error_statuses=(400, 401, 403, 404, 409, 500, 503)),
)
