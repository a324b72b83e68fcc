"""What a plain nats-py client does with jobs, following docs/JOBS.md only."""

import asyncio
import hashlib
import hmac
import uuid
from collections import defaultdict

import orjson

from tests.conftest import CALLER_KEY

RESULTS = "integrations.v1.results"


def chat_request(content: str = "Hello", **params) -> dict:
    params.setdefault("model", "gpt-4o-mini")
    params.setdefault("messages", [{"role": "user", "content": content}])
    return {"provider": "openai", "operation": "chat.completions", "params": params}


def new_id(prefix: str = "job") -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def get_grant(nc, headers: dict | None = None, **body) -> dict:
    msg = await nc.request("integrations.v1.jobs.grant", orjson.dumps(body), timeout=5,
                           headers=headers or {"x-api-key": CALLER_KEY})
    assert msg.headers["x-status"] == "200", msg.data
    return orjson.loads(msg.data)


def sign(grant: dict, job_id: str, kind: str, body: bytes, reply_to: str | None = None) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{job_id}\n{kind}\n{reply_to or ''}\n{digest}".encode()
    return hmac.new(bytes.fromhex(grant["jobKey"]), message, "sha256").hexdigest()


async def publish_job(js, grant: dict, job_id: str, request: dict, kind: str = "execute",
                      reply_to: str | None = None, body: bytes | None = None, signed_body: bytes | None = None,
                      extra: dict | None = None):
    body = orjson.dumps(request) if body is None else body
    headers = {"Nats-Msg-Id": job_id, "x-job-grant": grant["grant"],
               "x-job-signature": sign(grant, job_id, kind, signed_body if signed_body is not None else body,
                                       reply_to)}
    if reply_to:
        headers["x-reply-to"] = reply_to
    headers.update(extra or {})
    return await js.publish(f"integrations.v1.jobs.{kind}", body, headers=headers)


class ResultWatch:
    """Every result message seen on integrations.v1.results.> while it is open, per job id."""

    def __init__(self) -> None:
        self.seen: dict[str, list] = defaultdict(list)
        self._changed = asyncio.Event()
        self._sub = None

    async def open(self, nc, subject: str = f"{RESULTS}.>") -> "ResultWatch":
        self._sub = await nc.subscribe(subject, cb=self._on)
        await nc.flush()
        return self

    async def _on(self, msg) -> None:
        self.seen[msg.subject.rsplit(".", 1)[1]].append(msg)
        self._changed.set()

    async def wait_for(self, ids, within_s: float = 30.0) -> dict[str, object]:
        wanted = set(ids)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not wanted <= self.seen.keys():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                missing = wanted - self.seen.keys()
                raise AssertionError(f"{len(missing)} results missing, e.g. {sorted(missing)[:3]}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return {i: self.seen[i][0] for i in wanted}

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


async def job_status(nc, job_id: str, headers: dict | None = None) -> tuple[int, dict]:
    msg = await nc.request("integrations.v1.jobs.get", orjson.dumps({"id": job_id}), timeout=5,
                           headers=headers or {"x-api-key": CALLER_KEY})
    return int(msg.headers["x-status"]), orjson.loads(msg.data)


async def wait_status(nc, job_id: str, statuses=("succeeded", "failed", "cancelled"), within_s: float = 20.0,
                      headers: dict | None = None, min_attempts: int = 0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        status, body = await job_status(nc, job_id, headers)
        if status == 200 and body["status"] in statuses and body.get("attempts", 0) >= min_attempts:
            return body
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} still {body}")
        await asyncio.sleep(0.05)


async def until(check, within_s: float = 20.0, every_s: float = 0.05) -> None:
    """Polls `check()` (no bus event to wait for: llmock's journal, stream state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        if await check() if asyncio.iscoroutinefunction(check) else check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within_s}s: {check}")
        await asyncio.sleep(every_s)
