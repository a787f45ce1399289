"""No job waits for ever: a job still `pending` JOB_TIMEOUT_SECONDS after it was submitted found no
reachable ComfyUI server in all that time (workers take nothing off the queue without one), and
fails COMFYUI_UNAVAILABLE.

Both the workers' reconciler and the API run this sweep, so it happens even when every worker is
down. The change is conditional (`pending → failed` only), so a job claimed in the same instant
is left to its worker, and two sweepers never fail one job twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from models import repository
from models.job import JobStatus, RestorationJob
from models.repository import DatabaseUnavailable
from tasks import metrics
from tasks.failures import no_server

log = logging.getLogger("restore.deadline")

JobListener = Callable[[RestorationJob], Awaitable[None]]


async def fail_overdue_pending(
    *, timeout_seconds: float, servers: Sequence[str], on_change: JobListener | None = None
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
        if on_change is not None:
            await on_change(done)
    return failed


async def sweep_forever(
    *, timeout_seconds: float, servers: Sequence[str], interval: float, on_change: JobListener | None = None
) -> None:
    """`fail_overdue_pending` every `interval` seconds, riding out database outages."""
    while True:
        try:
            await fail_overdue_pending(timeout_seconds=timeout_seconds, servers=servers, on_change=on_change)
        except DatabaseUnavailable:
            log.warning("deadline.skipped", extra={"reason": "database unavailable"})
        except Exception:  # never let one bad round stop the sweep for good
            log.exception("deadline.failed")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def sweeping(
    *, timeout_seconds: float, servers: Sequence[str], interval: float, on_change: JobListener | None = None
) -> AsyncIterator[None]:
    """`sweep_forever` in the background for the duration of the block."""
    task = asyncio.create_task(
        sweep_forever(timeout_seconds=timeout_seconds, servers=servers, interval=interval, on_change=on_change),
        name="pending-deadline",
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])
