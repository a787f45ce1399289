"""The reconciler: nothing stuck, nothing lost, whatever broke.

Runs periodically in every worker (one at a time, under a Redis lock):

* a `processing` job whose lease ran out lost its worker (killed, OOM, host gone): it is taken
  over and settled from ComfyUI's own record, the job id being the prompt id (`Restorer.settle`);
* a `pending` job older than `pending_grace` that is not in the queue lost its message (Huey
  takes a message off the list before running it and Redis may restart empty): it is queued
  again. It never started, so this is not a retry, and the atomic claim means a job never runs
  twice at once even if a message turns up twice.

Jobs past their deadline are failed by `settle` (TIMEOUT), and their prompt is cancelled in ComfyUI;
a job ComfyUI has no record of fails as JOB_LOST. `settle` fails the job on every error of its
own (INTERNAL at worst), so an orphan never stays `processing` because settling it broke.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models import repository
from models.repository import DatabaseUnavailable
from tasks import metrics, periodic
from tasks.queue import JobQueue, QueueUnavailable
from tasks.restore import Restorer

log = logging.getLogger("restore.reconcile")

LOCK_KEY = "restoration:reconcile-lock"
# A message is taken off the queue a moment before its job is claimed: younger pending jobs are
# left alone so a job being picked up right now is not queued twice for nothing.
PENDING_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Report:
    settled: int = 0
    requeued: int = 0
    skipped: bool = False


class Reconciler:
    def __init__(
        self,
        *,
        restorer: Restorer,
        queue: JobQueue,
        redis: aioredis.Redis,
        interval: float,
        pending_grace: float = PENDING_GRACE_SECONDS,
    ) -> None:
        self._restorer = restorer
        self._queue = queue
        self._redis = redis
        self.interval = interval
        self.pending_grace = pending_grace

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A round every `interval` seconds in the background for the duration of the block."""
        unavailable = (DatabaseUnavailable, QueueUnavailable, RedisError, OSError)
        return periodic.running(self.interval, self._round, log=log, event="reconcile", unavailable=unavailable)

    async def _round(self) -> None:
        report = await self.run_once()
        if report.settled or report.requeued:
            log.info("reconcile.done", extra={"settled": report.settled, "requeued": report.requeued})

    async def run_once(self) -> Report:
        token = uuid.uuid4().hex
        # Outlives a slow round; a worker killed mid-round blocks the others for this long at most.
        lock_ms = int(max(self.interval * 3, 10) * 1000)
        if not await self._redis.set(LOCK_KEY, token, nx=True, px=lock_ms):
            return Report(skipped=True)
        try:
            settled = await self._settle_orphans()
            requeued = await self._requeue_lost()
        finally:
            # Release only our own lock (compare-and-delete).
            await self._redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                1,
                LOCK_KEY,
                token,
            )
        return Report(settled=settled, requeued=requeued)

    async def _settle_orphans(self) -> int:
        settled = 0
        for job in await repository.orphaned_jobs():
            taken = await repository.take_over(
                job.id, worker_id=self._restorer.worker_id, lease_seconds=self._restorer.lease_seconds
            )
            if taken is not None:
                log.warning("reconcile.orphan", extra={"job_id": str(job.id), "previous_worker": job.worker_id})
                await self._restorer.settle(taken)
                metrics.JOBS_SETTLED.inc()
                settled += 1
        return settled

    async def _requeue_lost(self) -> int:
        waiting = await repository.pending_jobs(older_than=self.pending_grace)
        if not waiting:
            return 0
        queued = await self._queue.queued_ids()
        requeued = 0
        for job in waiting:
            if str(job.id) not in queued:
                log.warning("reconcile.requeue", extra={"job_id": str(job.id), "reason": "its queue message was lost"})
                await self._queue.enqueue(job.id, user_id=job.user_id)
                metrics.JOBS_REQUEUED.inc()
                requeued += 1
        return requeued
