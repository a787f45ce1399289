"""While a worker runs a job: notice that it stopped being the worker's to run (its owner
cancelled it), so the prompt is taken out of ComfyUI and the slot given back within seconds.

The API cancels a job by a conditional update of its row (`processing → cancelled`); the worker
learns of it by reading the row's status every `CANCEL_POLL_SECONDS` while it runs the job. A
poll rather than a pub/sub signal because the row is the truth: a signal can be missed (pub/sub
delivers at most once, and not while the subscriber reconnects), so it would need this poll behind
it anyway; the poll needs no connection of its own, works the same with the embedded queue of
`restoration dev`, and costs one primary-key read per running job per second (a server holds
`COMFYUI_MAX_INFLIGHT` of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from models import repository
from models.job import JobStatus
from models.repository import DatabaseUnavailable

log = logging.getLogger("restore.pipeline")

T = TypeVar("T")

# The contract gives a cancelled processing job 5 s to become `cancelled` and its prompt to be
# withdrawn: a 1 s poll leaves the rest for the withdrawal's few HTTP calls and a loaded database.
CANCEL_POLL_SECONDS = 1.0


class Stopped(Exception):
    """The job is no longer `processing` for this worker (cancelled, or settled by someone else)."""

    def __init__(self, status: JobStatus | None) -> None:
        super().__init__(f"the job is {status.value if status else 'gone'}")
        self.status = status


class JobWatch:
    """The status of one running job, read every `interval` seconds until it is not `processing`."""

    def __init__(self, job_id: str, *, interval: float = CANCEL_POLL_SECONDS) -> None:
        self.job_id = job_id
        self.interval = interval
        self.stopped = asyncio.Event()
        self.status: JobStatus | None = JobStatus.PROCESSING

    async def poll(self) -> None:
        """Read the status until it is not `processing`, then set `stopped`; rides out outages."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                status = await repository.job_status(self.job_id)
            except DatabaseUnavailable:
                continue  # the job's own next step meets the outage too; its end is conditional
            if status is not JobStatus.PROCESSING:
                self.status = status
                self.stopped.set()
                return

    def check(self) -> None:
        """Raise Stopped once the job has stopped being ours."""
        if self.stopped.is_set():
            raise Stopped(self.status)

    async def until_stopped(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, unless the job stops first: then `work` is cancelled and Stopped raised
        (also when both happen at once, so a result that lands with the cancel is not used)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        if self.stopped.is_set():
            if not task.cancelled():
                task.exception()  # retrieved: superseded by the stop
            raise Stopped(self.status)
        return task.result()


@contextlib.asynccontextmanager
async def watching(job_id: str, *, interval: float = CANCEL_POLL_SECONDS) -> AsyncIterator[JobWatch]:
    """A JobWatch polling in the background for the duration of the block."""
    watch = JobWatch(job_id, interval=interval)
    task = asyncio.create_task(watch.poll(), name=f"watch-{job_id}")
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("restore.watch_failed", extra={"job_id": job_id}, exc_info=error)
