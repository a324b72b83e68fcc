"""The job consumer: takes job messages from the durable pull consumer and hands them to the
JobRunner, with at most INTEGRATIONS_JOB_CONCURRENCY jobs running at once, apart from the
request-reply subscribers (their own INTEGRATIONS_WORKER_CONCURRENCY).

Each slot has its own pull subscription and fetches one message when it is free. So a worker
never holds more job messages than it runs (no over-fetch, unlike a batch pull with
concurrent handlers: faststream#2563), a job starts as soon as it is published, and what one
busy worker cannot take waits in the stream for another. Plain nats-py rather than a FastStream
subscriber: the slot loop needs the message's metadata, in-progress signals and a nak on stop.
"""

import asyncio
import contextlib
import logging
import time

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts import subjects
from service.jobs.runner import DeferJob, IncomingJob, JobRunner

log = logging.getLogger("symbia.integrations.jobs")

MIN_START_INTERVAL_S = 0.1


class InteractiveFirst:
    """Jobs share the worker's event loop with request-reply calls. While interactive requests are
    in flight (or were, within the last `quiet_s`) and the loop runs late by more than `lag_limit_s`
    (its CPU is saturated), job slots start at most one job per MIN_START_INTERVAL_S; running jobs
    go on. When the loop keeps up (jobs waiting on slow upstreams), jobs run at full concurrency."""

    def __init__(self, lag_limit_s: float, quiet_s: float = 0.05, tick_s: float = 0.01) -> None:
        self.lag_limit_s = lag_limit_s
        self.lag_s = 0.0
        self._quiet_s = quiet_s
        self._tick_s = tick_s
        self._in_flight = 0
        self._last = 0.0
        self._task: asyncio.Task | None = None

    def begin(self) -> None:
        self._in_flight += 1
        self._last = time.monotonic()

    def end(self) -> None:
        self._in_flight -= 1
        self._last = time.monotonic()

    @property
    def hold_jobs(self) -> bool:
        if self.lag_s <= self.lag_limit_s:
            return False
        return self._in_flight > 0 or time.monotonic() - self._last < self._quiet_s

    def start(self) -> None:
        if self.lag_limit_s > 0:
            self._task = asyncio.create_task(self._measure())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _measure(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self._tick_s)
            late = time.monotonic() - started - self._tick_s
            self.lag_s = late if late > self.lag_s else 0.7 * self.lag_s + 0.3 * late   # fast up, slow down


class JobConsumer:
    def __init__(self, js: JetStreamContext, runner: JobRunner, *, concurrency: int, ack_wait_s: float,
                 priority: InteractiveFirst | None = None, poll_s: float = 5.0) -> None:
        self._js = js
        self._runner = runner
        self._priority = priority
        self._concurrency = concurrency
        self._ack_wait_s = ack_wait_s
        self._poll_s = poll_s
        self._slots: dict[asyncio.Task, JetStreamContext.PullSubscription] = {}
        self._busy: dict[asyncio.Task, Msg] = {}
        self._last_start = 0.0
        self._beat: asyncio.Task | None = None
        self._stopping = False
        self._last_error_log = 0.0

    @property
    def running(self) -> int:
        return len(self._busy)

    async def start(self) -> None:
        for _ in range(self._concurrency):
            sub = await self._js.pull_subscribe_bind(durable=subjects.JOBS_CONSUMER, stream=subjects.JOBS_STREAM)
            self._slots[asyncio.create_task(self._slot(sub))] = sub
        self._beat = asyncio.create_task(self._in_progress())

    async def _slot(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            if self._held():
                await asyncio.sleep(0.005)
                continue
            self._last_start = time.monotonic()
            try:
                messages = await sub.fetch(1, timeout=self._poll_s)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:        # disconnected, reconnecting: retry quietly
                self._log_error(exc)
                await asyncio.sleep(1)
                continue
            for message in messages:
                await self._handle(message)

    def _held(self) -> bool:
        """Whether a free slot waits before taking a job: while request-reply calls need the CPU,
        one job may still start every MIN_START_INTERVAL_S, so jobs are never starved."""
        if self._priority is None or not self._priority.hold_jobs:
            return False
        return time.monotonic() - self._last_start < MIN_START_INTERVAL_S

    async def _handle(self, message: Msg) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._busy[task] = message
        try:
            meta = message.metadata
            job = IncomingJob(kind=message.subject.rsplit(".", 1)[-1], headers=message.headers or {},
                              body=message.data or b"", seq=meta.sequence.stream, deliveries=meta.num_delivered,
                              published_at=meta.timestamp.timestamp())
            await self._runner.run(job)
        except DeferJob as defer:                  # refused for now (limit, open circuit): later, not failed
            with contextlib.suppress(Exception):
                await message.nak(delay=defer.delay_s)
        except asyncio.CancelledError:
            # Stopped mid-job (drain timeout): hand it to another worker now rather than after ack_wait.
            with contextlib.suppress(Exception):
                await message.nak()
            raise
        except Exception as exc:
            log.error("job message %s failed and will be redelivered: %r", message.metadata.sequence.stream, exc)
            with contextlib.suppress(Exception):
                await message.nak(delay=1)
        else:
            try:
                await message.ack()
            except Exception as exc:        # redelivered later; the runner then finds it finished
                self._log_error(exc)
        finally:
            del self._busy[task]

    async def _in_progress(self) -> None:
        """Tells JetStream that running jobs are alive, so only a lost worker's jobs are redelivered."""
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            for message in list(self._busy.values()):
                with contextlib.suppress(Exception):
                    await message.in_progress()

    def _log_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("jobs: %s", exc or type(exc).__name__)

    async def stop(self, grace_s: float) -> None:
        """Take no new jobs; let running ones finish within `grace_s`, then nak the rest."""
        self._stopping = True
        # Idle slots first, subscriptions included: a pull request left behind would capture a job
        # (one handed back by this very stop, say) that then waits ack_wait in a dead inbox.
        idle = [task for task in self._slots if task not in self._busy]
        for task in idle:
            task.cancel()
        await self._close(idle)
        busy = [task for task in self._slots if task not in idle]
        if busy:
            log.info("waiting up to %.0fs for %d running jobs", grace_s, len(busy))
            _, late = await asyncio.wait(busy, timeout=grace_s)
            for task in late:
                task.cancel()
            await self._close(busy)
        if self._beat:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    async def _close(self, slots: list[asyncio.Task]) -> None:
        await asyncio.gather(*slots, return_exceptions=True)
        for task in slots:
            with contextlib.suppress(Exception):
                await self._slots[task].unsubscribe()
