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

    kind = "queue"

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


def register_restore_task(huey: RedisHuey, body: Callable[[str], None]) -> TaskWrapper:
    """Register the restore task under its stable name; `body(job_id)` runs in a worker thread.

    Huey names a task after its function's module, so the API and the worker must register the
    same function object's module: this wrapper's (`tasks.queue.restore`).
    """

    def restore(job_id: str) -> None:
        body(job_id)

    return huey.task(name=TASK_NAME, retries=0)(restore)


def _api_side(job_id: str) -> None:
    raise RuntimeError(f"job {job_id}: the restore task runs in `restoration worker`, not in the API")


class JobQueue:
    """What the API needs of the queue: put a job id on it, see how long it is, check Redis."""

    def __init__(self, huey: RedisHuey, task: TaskWrapper | None = None) -> None:
        self.huey = huey
        self._task = task if task is not None else register_restore_task(huey, _api_side)

    async def enqueue(self, job_id: uuid.UUID) -> None:
        try:
            await asyncio.to_thread(self._task, str(job_id))
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
