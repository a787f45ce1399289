"""No job waits for ever: a job still `pending` JOB_TIMEOUT_SECONDS after it was submitted found no
reachable ComfyUI server in all that time (workers take nothing off the queue without one), and
fails COMFYUI_UNAVAILABLE.

Both the workers' reconciler and the API run this sweep, so it happens even when every worker is
down. The change is conditional (`pending → failed` only), so a job claimed in the same instant
is left to its worker, and two sweepers never fail one job twice. A failed job's message is taken
off the queue (best effort, as for a cancel), so it holds no place in the line of the jobs behind.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from models import repository
from models.job import JobStatus, RestorationJob
from tasks import metrics, periodic
from tasks.failures import no_server
from tasks.queue import JobQueue, QueueUnavailable

log = logging.getLogger("restore.deadline")

JobListener = Callable[[RestorationJob], Awaitable[None]]


async def fail_overdue_pending(
    *,
    timeout_seconds: float,
    servers: Sequence[str],
    on_change: JobListener | None = None,
    queue: JobQueue | None = None,
) -> int:
    """Fail every job pending for longer than `timeout_seconds`; how many were failed."""
    failure = no_server(tried=list(servers), seconds=timeout_seconds)
    failed = 0
    for job in await repository.pending_jobs(older_than=timeout_seconds):
        done = await repository.fail_job(
            job.id,
            message=failure.message,
            code=failure.code,
            retryable=failure.retryable,
            only_from=(JobStatus.PENDING,),
        )
        if done is None:
            continue
        failed += 1
        metrics.JOBS_FAILED.labels(failure.code.value).inc()
        log.warning(
            "restore.failed", extra={"job_id": str(job.id), "code": failure.code.value, "detail": failure.detail}
        )
        if queue is not None:
            with contextlib.suppress(QueueUnavailable):  # a message delivered later is refused by the claim
                await queue.withdraw(job.id)
        if on_change is not None:
            await on_change(done)
    return failed


def sweeping(
    *,
    timeout_seconds: float,
    servers: Sequence[str],
    interval: float,
    on_change: JobListener | None = None,
    queue: JobQueue | None = None,
) -> contextlib.AbstractAsyncContextManager[None]:
    """`fail_overdue_pending` every `interval` seconds in the background for the duration of the block."""
    sweep = functools.partial(
        fail_overdue_pending, timeout_seconds=timeout_seconds, servers=servers, on_change=on_change, queue=queue
    )
    return periodic.running(interval, sweep, log=log, event="deadline")
