"""The restoration pipeline one job goes through in the worker.

claim (pending → processing) → download the original → normalise it for ComfyUI → upload it into a
per-slot input file → queue the prompt (prompt_id = job id) → wait for it → fetch the output →
strip ComfyUI's metadata → store `restored/{id}.png` → completed. Any failure fails the job with a
message its owner can read; nothing is retried (fail fast). The whole run is bounded by
`job_timeout`: on expiry the prompt is removed from ComfyUI's queue or interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from comfy.client import ComfyClient, output_image, settle_entry
from comfy.errors import ComfyError, ComfyUnavailable
from comfy.images import ImageRejected, normalise_for_comfy, strip_png_metadata
from comfy.messages import Message
from comfy.progress import ProgressTracker
from models import repository
from models.job import RestorationJob
from models.repository import DatabaseUnavailable
from storage.base import ObjectStore
from storage.errors import StorageError, StorageUnavailable
from storage.keys import restored_key
from tasks import metrics
from tasks.progress import ProgressReporter
from workflows.binding import Workflow

log = logging.getLogger("restore.pipeline")

# ComfyUI input subfolder for our uploads; files are reused per slot (ComfyUI's /prompt lists the
# input folder, so one file per job would slow every later prompt down).
INPUT_SUBFOLDER = "restore"
# How long a claim stays valid without the worker renewing it (the reconciler's yardstick).
LEASE_SECONDS = 60.0

JobListener = Callable[[RestorationJob], Awaitable[None]]


@dataclass
class Restorer:
    comfy: ComfyClient
    storage: ObjectStore
    workflow: Workflow
    worker_id: str
    job_timeout: float
    max_inflight: int = 2
    on_change: JobListener | None = None
    lease_seconds: float = LEASE_SECONDS

    def __post_init__(self) -> None:
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(self.max_inflight):
            self._slots.put_nowait(slot)

    async def run(self, job_id: str) -> None:
        """Process one job end to end; never raises for a job-level failure.

        While it runs, the job's lease is renewed; if this process dies, the lease runs out and
        the reconciler settles the job from ComfyUI's own record.
        """
        try:
            job = await repository.claim_job(job_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds)
        except DatabaseUnavailable:
            log.error("restore.claim_failed job_id=%s (database unavailable; the reconciler re-queues it)", job_id)
            return
        if job is None:
            log.info("restore.skipped job_id=%s (not pending)", job_id)
            return
        await self._changed(job)
        started = time.monotonic()
        if job.started_at is not None:
            metrics.QUEUE_WAIT.observe(max(0.0, (job.started_at - job.created_at).total_seconds()))
        log.info("restore.started job_id=%s", job_id)
        heartbeat = asyncio.create_task(self._heartbeat(job_id), name=f"lease-{job_id}")
        try:
            await self._run_claimed(job, started)
        except DatabaseUnavailable:
            log.error("restore.unsettled job_id=%s (database unavailable; the reconciler settles it)", job_id)
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # without absorbing a cancellation of this job

    async def _run_claimed(self, job: RestorationJob, started: float) -> None:
        job_id = str(job.id)
        try:
            async with asyncio.timeout(self.job_timeout):
                key = await self._process(job)
        except TimeoutError:
            await self._cancel_quietly(job_id)
            await self._fail(job_id, f"the job did not finish within {self.job_timeout:g} s", "timeout")
        except (ComfyError, StorageError, ImageRejected) as exc:
            await self._fail(job_id, str(exc), getattr(exc, "kind", "error"))
        except Exception:
            log.exception("restore.crashed job_id=%s", job_id)
            await self._fail(job_id, "internal error while restoring the image", "internal")
        else:
            await self._complete(job_id, key, started)

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await repository.renew_lease(job_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds):
                    return
            except DatabaseUnavailable:
                log.warning("restore.lease_not_renewed job_id=%s", job_id)

    async def settle(self, job: RestorationJob) -> None:
        """Settle a job whose worker is gone, from ComfyUI's own record (the job id is the prompt id).

        Finished in ComfyUI → fetch and store the result, completed. Failed there → failed with
        ComfyUI's reason. Still queued or running → left alone until its deadline, then cancelled.
        Unknown to ComfyUI → failed ("worker lost").
        """
        job_id = str(job.id)
        deadline_passed = job.started_at is not None and (time.time() - job.started_at.timestamp() > self.job_timeout)
        try:
            entry = await self.comfy.history(job_id)
            if entry is None:
                running, pending = await self.comfy.queue_ids()
                if job_id not in running | pending:
                    await self._fail(
                        job_id, "worker lost: the job's worker stopped and ComfyUI has no record of it", "worker_lost"
                    )
                elif deadline_passed:
                    await self._cancel_quietly(job_id)
                    await self._fail(job_id, f"the job did not finish within {self.job_timeout:g} s", "timeout")
                return
            settle_entry(entry)
            key = await self._store_result(job, entry)
        except ComfyUnavailable as exc:
            if deadline_passed:
                await self._fail(job_id, f"worker lost, and {exc}", "worker_lost")
            return
        except (ComfyError, StorageError, ImageRejected) as exc:
            await self._fail(job_id, str(exc), getattr(exc, "kind", "error"))
            return
        await self._complete(job_id, key, None)

    async def _complete(self, job_id: str, key: str, started: float | None) -> None:
        done = await repository.complete_job(job_id, processed_key=key)
        if done is not None:
            metrics.JOBS_COMPLETED.inc()
            _observe_end_to_end(done)
            seconds = f"{time.monotonic() - started:.3f}" if started is not None else "?"
            log.info("restore.completed job_id=%s seconds=%s", job_id, seconds)
            await self._changed(done)

    async def _process(self, job: RestorationJob) -> str:
        prompt_id = str(job.id)
        original = await self.storage.get_bytes(job.original_key)
        png = await asyncio.to_thread(normalise_for_comfy, original)
        async with self._slot() as slot:
            image_name = await self.comfy.upload_image(
                png, name=f"{self.comfy.client_id}-{slot}.png", subfolder=INPUT_SUBFOLDER
            )
            prompt = self.workflow.build(
                image_name=image_name, denoise=job.denoise, filename_prefix=f"restore/{job.id}/restored"
            )
            tracker = ProgressTracker(prompt)
            async with self.comfy.watch(prompt_id), ProgressReporter(self._progress_sink(prompt_id)) as reporter:

                def on_event(message: Message) -> None:
                    value = tracker.feed(message)
                    if value is not None:
                        reporter.update(value)

                await self.comfy.queue_prompt(prompt, prompt_id=prompt_id)
                log.info("restore.comfy.queued job_id=%s prompt_id=%s", job.id, prompt_id)
                with metrics.COMFY_EXECUTION.time():
                    entry = await self.comfy.wait(prompt_id, on_event=on_event)
            return await self._store_result(job, entry)

    async def _store_result(self, job: RestorationJob, entry: dict[str, object]) -> str:
        """Fetch the output image of a finished prompt, strip ComfyUI's metadata, store it."""
        result = await self.comfy.view(output_image(entry, self.workflow.output_node))
        clean = await asyncio.to_thread(strip_png_metadata, result)
        key = restored_key(job.id)
        try:
            await self.storage.put_bytes(key, clean, content_type="image/png")
        except StorageError as exc:
            raise StorageUnavailable(f"could not store the restored image: {exc}") from exc
        return key

    def _progress_sink(self, job_id: str) -> Callable[[float], Awaitable[None]]:
        async def sink(value: float) -> None:
            try:
                job = await repository.set_progress(job_id, round(value, 4))
            except DatabaseUnavailable:
                log.warning("restore.progress_not_saved job_id=%s (database unavailable)", job_id)
                return
            if job is not None:
                await self._changed(job)

        return sink

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[int]:
        slot = await self._slots.get()
        try:
            yield slot
        finally:
            self._slots.put_nowait(slot)

    async def _fail(self, job_id: str, message: str, kind: str) -> None:
        log.warning("restore.failed job_id=%s kind=%s message=%s", job_id, kind, message)
        failed = await repository.fail_job(job_id, message=message, kind=kind)
        if failed is not None:
            metrics.JOBS_FAILED.labels(kind).inc()
            _observe_end_to_end(failed)
            await self._changed(failed)

    async def _cancel_quietly(self, prompt_id: str) -> None:
        with contextlib.suppress(ComfyError):
            await self.comfy.cancel(prompt_id)

    async def _changed(self, job: RestorationJob) -> None:
        if self.on_change is not None:
            await self.on_change(job)


def _observe_end_to_end(job: RestorationJob) -> None:
    if job.finished_at is not None:
        metrics.END_TO_END.observe(max(0.0, (job.finished_at - job.created_at).total_seconds()))
