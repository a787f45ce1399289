"""The Huey instance (Redis broker), the ONE restore task, and enqueueing a job in its fair turn.

Huey is synchronous, so the API enqueues in a thread. Tasks take ids only: the worker reloads the
job and claims it, which makes a duplicate delivery harmless. No automatic retries: a failed job
is failed (fail fast), and the user resubmits.

The queue is Huey's priority queue (a Redis sorted set): each job's priority is minus its fair
start tag (`tasks.scheduler.FairTurns`), so jobs start in turn across users, in arrival order
within one user. A worker's consumer threads dequeue through its `SlotGate` (`FairHuey.gate`):
no free slot on a reachable ComfyUI server, no message taken.

Each job's sorted-set member is remembered at enqueue (`FairStorage`), so its place in the queue
is one `ZRANK` and a pending job can be withdrawn; `tasks.estimates` reads and records the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import time
import uuid
from collections.abc import Callable, Sequence

import redis
from huey import PriorityRedisHuey
from huey.api import Task, TaskWrapper
from huey.storage import PriorityRedisStorage

from tasks.estimates import Asked, QueueEstimates, Standing
from tasks.scheduler import FairTurns, SlotGate

log = logging.getLogger("restore.queue")

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


class FairStorage(PriorityRedisStorage):
    """Huey's Redis priority queue, which also remembers each job's member (`members_key`).

    A member is Huey's own: an 8-byte big-endian enqueue time in microseconds, then the message
    (its dequeue strips the 8 bytes); the score is the fair tag. Ties thus go in enqueue order,
    and the set's order is exactly the order in which workers pop, i.e. start, the jobs.
    """

    @property
    def members_key(self) -> str:
        return f"{self.queue_key}.members"

    def enqueue_job(self, pipe: redis.client.Pipeline, job_id: str, data: bytes, *, tag: int) -> None:
        member = struct.pack(">Q", int(time.time() * 1e6)) + data
        pipe.zadd(self.queue_key, {member: tag})
        pipe.hset(self.members_key, job_id, member)

    def flush_queue(self) -> None:
        super().flush_queue()
        self.conn.delete(self.members_key)


class FairHuey(PriorityRedisHuey):
    """Huey's priority queue on Redis whose dequeue goes through the worker's `SlotGate`, if any,
    and records each start (`QueueEstimates.started`)."""

    storage_class = FairStorage
    storage: FairStorage
    gate: SlotGate | None = None

    @functools.cached_property
    def estimates(self) -> QueueEstimates:
        return QueueEstimates(self.storage.conn, queue_key=self.storage.queue_key, members_key=self.storage.members_key)

    def dequeue(self) -> Task | None:
        task = super().dequeue() if self.gate is None else self.gate.dequeue(super().dequeue)
        if task is not None and task.args:
            try:
                self.estimates.started(str(task.args[0]))
            except redis.RedisError as exc:  # the job runs anyway; only its estimate misses it
                log.warning("queue.start_not_recorded", extra={"job_id": task.args[0], "error": repr(exc)})
        return task


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
        self.estimates = huey.estimates
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

    async def enqueue(self, job_id: uuid.UUID, *, user_id: str, megapixels: float | None = None) -> None:
        """Queue the job in its owner's fair turn; `megapixels` (of the original) picks its
        execution estimate."""
        try:
            await asyncio.to_thread(self._enqueue, str(job_id), user_id, megapixels)
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    async def enqueue_first(self, job_id: uuid.UUID | str) -> None:
        """Queue a job again at the head of the line (it had its turn, but never reached ComfyUI)."""
        try:
            await asyncio.to_thread(self._enqueue_first, str(job_id))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    def _enqueue_first(self, job_id: str) -> None:
        self._place(job_id, tag=self.fair.clock())

    def _enqueue(self, job_id: str, user_id: str, megapixels: float | None) -> None:
        self._place(job_id, tag=self.fair.tag_for(user_id), megapixels=megapixels)

    def _place(self, job_id: str, *, tag: int, megapixels: float | None = None) -> None:
        """Put the job's message in the queue with its fair tag (Huey's priority is minus the
        tag), remembering its member and, when given, its size: one transaction."""
        data = self.huey.serialize_task(self.task.s(job_id, priority=-tag))
        pipe = self.huey.storage.conn.pipeline(transaction=True)
        self.huey.storage.enqueue_job(pipe, job_id, data, tag=tag)
        if megapixels:
            self.estimates.note_size(pipe, job_id, megapixels=megapixels)
        pipe.execute()

    async def withdraw(self, job_id: uuid.UUID | str) -> bool:
        """Drop a pending job from the queue (its message) and from the order; True when its
        message was still there. For a cancelled job: the worker's claim refuses it anyway."""
        try:
            return await asyncio.to_thread(self.estimates.withdraw, str(job_id))
        except redis.RedisError as exc:
            raise QueueUnavailable() from exc

    async def standings(self, jobs: Sequence[Asked]) -> dict[str, Standing]:
        """Place in the queue and ETA of each job (pending or processing), in one round trip;
        an empty answer when Redis cannot be read (a reader then shows nulls, never an error)."""
        if not jobs:
            return {}
        try:
            return await asyncio.to_thread(self.estimates.read, jobs)
        except (redis.RedisError, OSError) as exc:
            log.warning("queue.standing_unavailable", extra={"error": repr(exc)})
            return {}

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
