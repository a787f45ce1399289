"""The reconciler: nothing stuck, nothing lost, whatever broke.

Runs periodically in every worker (one at a time, under a Redis lock):

* a `processing` job whose lease ran out lost its worker (killed, OOM, host gone): it is taken
  over and settled from ComfyUI's own record, the job id being the prompt id (`Restorer.settle`);
* a `pending` job older than `pending_grace` that is not in the queue lost its message (Huey
  takes a message off the list before running it and Redis may restart empty): it is queued
  again. It never started, so this is not a retry, and the atomic claim means a job never runs
  twice at once even if a message turns up twice;
* a `cancelled` job whose lease ran out was cancelled while its worker was gone, so nobody took
  its prompt out of ComfyUI: it is withdrawn (deleted if waiting, interrupted if running) from the
  server the row names, retried each round while that server is away, given up on once the job
  is past its deadline (its prompt is over by then).

Jobs past their deadline are failed by `settle` (TIMEOUT), and their prompt is cancelled in ComfyUI;
a job ComfyUI has no record of fails as JOB_LOST. `settle` fails the job on every error of its
own (INTERNAL at worst), so an orphan never stays `processing` because settling it broke.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from comfy.errors import ComfyError, ComfyUnavailable
from models import repository
from models.job import JobStatus, RestorationJob
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
    withdrawn: int = 0
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
        if report.settled or report.requeued or report.withdrawn:
            log.info(
                "reconcile.done",
                extra={"settled": report.settled, "requeued": report.requeued, "withdrawn": report.withdrawn},
            )

    async def run_once(self) -> Report:
        token = uuid.uuid4().hex
        # Outlives a slow round; a worker killed mid-round blocks the others for this long at most.
        lock_ms = int(max(self.interval * 3, 10) * 1000)
        if not await self._redis.set(LOCK_KEY, token, nx=True, px=lock_ms):
            return Report(skipped=True)
        try:
            settled = await self._settle_orphans()
            requeued = await self._requeue_lost()
            withdrawn = await self._withdraw_cancelled()
        finally:
            # Release only our own lock (compare-and-delete).
            await self._redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
                1,
                LOCK_KEY,
                token,
            )
        return Report(settled=settled, requeued=requeued, withdrawn=withdrawn)

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

    async def _withdraw_cancelled(self) -> int:
        withdrawn = 0
        # A prompt is over by its job's deadline: older cancels owe nothing any more.
        within = self._restorer.job_timeout + 2 * self._restorer.lease_seconds + self.interval
        for job in await repository.unwithdrawn_cancelled_jobs(cancelled_within=within):
            taken = await repository.take_over(
                job.id,
                worker_id=self._restorer.worker_id,
                lease_seconds=self._restorer.lease_seconds,
                status=JobStatus.CANCELLED,
            )
            if taken is not None and await self._withdraw(taken, previous_worker=job.worker_id):
                withdrawn += 1
        return withdrawn

    async def _withdraw(self, job: RestorationJob, *, previous_worker: str | None) -> bool:
        """Take a cancelled job's prompt out of ComfyUI; False when its server could not be asked
        yet (the job's lease, just renewed, brings it back in a later round)."""
        job_id = str(job.id)
        servers = self._restorer.servers
        outcome = "nothing sent"
        if job.comfy_server is not None and job.comfy_server in servers.urls:
            try:
                if job.comfy_server not in servers.reachable():  # not asked: a dead host could stall the round
                    raise ComfyUnavailable(f"{job.comfy_server} is down")
                outcome = (await servers.client(job.comfy_server).cancel(job_id)).value
            except ComfyError as exc:
                started = job.started_at.timestamp() if job.started_at else 0.0
                if time.time() - started <= self._restorer.job_timeout:
                    log.warning("reconcile.withdraw_failed", extra={"job_id": job_id, "error": str(exc)})
                    return False
                outcome = "given up: past its deadline"
        await repository.prompt_withdrawn(job_id)
        log.warning(
            "reconcile.withdrawn", extra={"job_id": job_id, "prompt": outcome, "previous_worker": previous_worker}
        )
        return True
