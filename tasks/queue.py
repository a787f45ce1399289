"""The Huey instance (Redis broker), the ONE restore task, and enqueueing a job in its fair turn.

Huey is synchronous, so the API enqueues in a thread. Tasks take ids only: the worker reloads the
job and claims it, which makes a duplicate delivery harmless. No automatic retries: a failed job
is failed (fail fast), and the user resubmits.

The queue is Huey's priority queue (a Redis sorted set): each job's priority is minus its fair
start tag (`tasks.scheduler.FairTurns`), so jobs start in turn across users, in arrival order
within one user. A worker's consumer threads dequeue through its `SlotGate` (`FairHuey.gate`):
no free slot on a reachable ComfyUI server, no message taken.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import redis
from huey import PriorityRedisHuey
from huey.api import Task, TaskWrapper

from tasks.scheduler import FairTurns, SlotGate

# Named apart from the plain list queue of earlier versions, so an upgrade never meets a Redis key
# of the other type; the reconciler queues again whatever pending job lost its message.
QUEUE_NAME = "restoration-jobs"
TASK_NAME = "restore"
# Fail fast when Redis is down: the API answers 503 instead of hanging the request.
REDIS_CONNECT_TIMEOUT = 2.0
# Must exceed the consumer's blocking read (1 s) so an idle BRPOP never looks like an outage.
REDIS_SOCKET_TIMEOUT = 5.0


class QueueUnavailable(Exception):
    """Redis cannot be reached; nothing was enqueued."""

    def __init__(self) -> None:
        super().__init__("job queue unavailable")


class FairHuey(PriorityRedisHuey):
    """Huey's priority queue on Redis whose dequeue goes through the worker's `SlotGate`, if any."""

    gate: SlotGate | None = None

    def dequeue(self) -> Task | None:
        if self.gate is None:
            return super().dequeue()
        return self.gate.dequeue(super().dequeue)


def create_huey(redis_url: str, *, blocking: bool = True) -> FairHuey:
    pool = redis.ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
    )
    return FairHuey(
        QUEUE_NAME,
        connection_pool=pool,
        blocking=blocking,
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

    def __init__(self, huey: FairHuey) -> None:
        self.huey = huey
        self.fair = FairTurns(huey.storage.conn)
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

    async def enqueue(self, job_id: uuid.UUID, *, user_id: str) -> None:
        """Queue the job in its owner's fair turn."""
        try:
            await asyncio.to_thread(self._enqueue, str(job_id), user_id)
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    async def enqueue_first(self, job_id: uuid.UUID | str) -> None:
        """Queue a job again at the head of the line (it had its turn, but never reached ComfyUI)."""
        try:
            await asyncio.to_thread(self._enqueue_first, str(job_id))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    def _enqueue_first(self, job_id: str) -> None:
        self.task(job_id, priority=-self.fair.clock())

    def _enqueue(self, job_id: str, user_id: str) -> None:
        tag = self.fair.tag_for(user_id)
        self.task(job_id, priority=-tag)

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
