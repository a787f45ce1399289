"""The Huey instance (Redis broker) and the API's side of it: enqueueing a job id.

Huey is synchronous, so the API enqueues in a thread. Tasks take ids only: the worker reloads the
job and claims it, which makes a duplicate delivery harmless. No automatic retries: a failed job
is failed (fail fast), and the user resubmits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import redis
from huey import RedisHuey
from huey.api import TaskWrapper

QUEUE_NAME = "restoration"
TASK_NAME = "restore"
# Fail fast when Redis is down: the API answers 503 instead of hanging the request.
REDIS_CONNECT_TIMEOUT = 2.0
# Must exceed the consumer's blocking read (1 s) so an idle BRPOP never looks like an outage.
REDIS_SOCKET_TIMEOUT = 5.0


class QueueUnavailable(Exception):
    """Redis cannot be reached; nothing was enqueued."""

    def __init__(self) -> None:
        super().__init__("job queue unavailable")


def create_huey(redis_url: str) -> RedisHuey:
    pool = redis.ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
    )
    return RedisHuey(
        QUEUE_NAME,
        connection_pool=pool,
        results=False,  # nothing reads task results; the job row is the result
        utc=True,
    )


Runner = Callable[[str], None]


class JobQueue:
    """The Huey queue and the ONE restore task.

    The task is defined here, once, with one body: it hands the job id to the runner the worker
    process attached with `serve()` (`restoration worker`'s consumer threads and the embedded
    worker of `restoration dev` both execute this same task). The API only enqueues it; a
    process that never called `serve()` refuses to execute it.
    """

    def __init__(self, huey: RedisHuey) -> None:
        self.huey = huey
        self._runner: Runner | None = None
        # Huey names a task after its function's module and the name given here, so every
        # process that builds a JobQueue agrees on `tasks.queue.restore`.
        self.task: TaskWrapper = huey.task(name=TASK_NAME, retries=0)(self._restore)

    def serve(self, runner: Runner) -> None:
        """Make this process execute restore tasks with `runner(job_id)` (blocking, in a thread)."""
        self._runner = runner

    def _restore(self, job_id: str) -> None:
        if self._runner is None:
            raise RuntimeError(f"job {job_id}: this process does not run restore tasks (no worker attached)")
        self._runner(job_id)

    async def enqueue(self, job_id: uuid.UUID) -> None:
        try:
            await asyncio.to_thread(self.task, str(job_id))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    async def depth(self) -> int:
        try:
            return int(await asyncio.to_thread(self.huey.pending_count))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    async def queued_ids(self) -> set[str]:
        """Job ids waiting in the queue (read without taking them off)."""
        try:
            tasks = await asyncio.to_thread(self.huey.pending)
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc
        return {str(task.args[0]) for task in tasks if task.args}

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.huey.storage.conn.ping))
        except redis.RedisError:
            return False
