"""The restoration pipeline one job goes through in the worker.

claim (pending → processing) → download the original → normalise it for ComfyUI → upload it into a
per-slot input file → queue the prompt (prompt_id = job id) → wait for it → fetch the output →
strip ComfyUI's metadata → store `restored/{id}.png` → completed. Any failure fails the job with
one of the contract's error codes, whether a new submission may succeed, and a message its owner
can read (no host, URL, bucket or path: those are logged with the job id); nothing is retried
(fail fast). The whole run is bounded by `job_timeout`: on expiry the prompt is removed from
ComfyUI's queue or interrupted.

Where each code comes from: the boundary exceptions carry theirs (`JobFailure`: ComfyUI's
COMFYUI_UNAVAILABLE, COMFYUI_REJECTED, COMFYUI_ERROR, JOB_LOST; storage's STORAGE_ERROR); the
pipeline adds TIMEOUT (the deadline), JOB_LOST (a worker gone, settled here) and INTERNAL (an
image we could not prepare or clean, or a bug).
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
from models.error_codes import ErrorCode, JobFailure
from models.job import RestorationJob
from models.repository import DatabaseUnavailable
from storage.base import ObjectStore
from storage.errors import StorageError
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

# What the job's owner reads for the failures the pipeline itself names.
INTERNAL_MESSAGE = "internal error while restoring the image"
IMAGE_NOT_PREPARED = "internal error: the photo could not be prepared for restoration"
WORKER_LOST = "worker lost: the job's worker stopped and ComfyUI has no record of it"
WORKER_LOST_UNREACHABLE = "worker lost: the job's worker stopped and ComfyUI could not be reached to recover the result"
ORIGINAL_UNREADABLE = "the original photo could not be read from storage"
RESULT_NOT_STORED = "the restored image could not be saved to storage"


@dataclass(frozen=True)
class Failure:
    """Why a job failed: the contract's code, whether a new submission may succeed, the owner's
    message, and the operator's detail (logged with the job id, never shown to the owner)."""

    code: ErrorCode
    retryable: bool
    message: str
    detail: str

    @classmethod
    def of(cls, exc: JobFailure) -> Failure:
        return cls(code=exc.code, retryable=exc.retryable, message=exc.public_message, detail=str(exc))

    @classmethod
    def named(cls, code: ErrorCode, message: str, *, detail: str | None = None) -> Failure:
        return cls(code=code, retryable=code.retryable, message=message, detail=detail or message)


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
            log.error(
                "restore.claim_failed",
                extra={"job_id": job_id, "reason": "database unavailable; the reconciler re-queues it"},
            )
            return
        if job is None:
            log.info("restore.skipped", extra={"job_id": job_id, "reason": "not pending"})
            return
        await self._changed(job)
        started = time.monotonic()
        if job.started_at is not None:
            metrics.QUEUE_WAIT.observe(max(0.0, (job.started_at - job.created_at).total_seconds()))
        log.info("restore.started", extra={"job_id": job_id})
        heartbeat = asyncio.create_task(self._heartbeat(job_id), name=f"lease-{job_id}")
        try:
            await self._run_claimed(job, started)
        except DatabaseUnavailable:
            log.error(
                "restore.unsettled",
                extra={"job_id": job_id, "reason": "database unavailable; the reconciler settles it"},
            )
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # without absorbing a cancellation of this job

    async def _run_claimed(self, job: RestorationJob, started: float) -> None:
        job_id = str(job.id)
        deadline = asyncio.timeout(self.job_timeout)
        try:
            async with deadline:
                key = await self._process(job)
        except TimeoutError as exc:
            if not deadline.expired():  # a timeout of something inside, not the job's own
                await self._fail(job_id, _crashed(job_id, exc))
                return
            await self._cancel_quietly(job_id)
            await self._fail(job_id, self._timed_out())
        except JobFailure as exc:
            await self._fail(job_id, Failure.of(exc))
        except ImageRejected as exc:
            await self._fail(job_id, Failure.named(ErrorCode.INTERNAL, IMAGE_NOT_PREPARED, detail=str(exc)))
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            await self._fail(job_id, _crashed(job_id, exc))
        else:
            await self._complete(job_id, key, started)

    def _timed_out(self) -> Failure:
        return Failure.named(ErrorCode.TIMEOUT, f"the job did not finish within {self.job_timeout:g} s")

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await repository.renew_lease(job_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds):
                    return
            except DatabaseUnavailable:
                log.warning("restore.lease_not_renewed", extra={"job_id": job_id})

    async def settle(self, job: RestorationJob) -> None:
        """Settle a job whose worker is gone, from ComfyUI's own record (the job id is the prompt id).

        Finished in ComfyUI → fetch and store the result, completed. Failed there → failed with
        ComfyUI's reason. Still queued or running → left alone until its deadline, then cancelled
        (TIMEOUT). Unknown to ComfyUI, or ComfyUI unreachable past the deadline → JOB_LOST.
        """
        job_id = str(job.id)
        deadline_passed = job.started_at is not None and (time.time() - job.started_at.timestamp() > self.job_timeout)
        try:
            entry = await self.comfy.history(job_id)
            if entry is None:
                running, pending = await self.comfy.queue_ids()
                if job_id not in running | pending:
                    await self._fail(
                        job_id,
                        Failure.named(
                            ErrorCode.JOB_LOST, WORKER_LOST, detail=f"worker {job.worker_id} lost; prompt unknown"
                        ),
                    )
                elif deadline_passed:
                    await self._cancel_quietly(job_id)
                    await self._fail(job_id, self._timed_out())
                return
            settle_entry(entry)
            key = await self._store_result(job, entry)
        except ComfyUnavailable as exc:
            if deadline_passed:
                await self._fail(
                    job_id, Failure.named(ErrorCode.JOB_LOST, WORKER_LOST_UNREACHABLE, detail=f"worker lost, and {exc}")
                )
            return
        except JobFailure as exc:
            await self._fail(job_id, Failure.of(exc))
            return
        except ImageRejected as exc:
            await self._fail(job_id, Failure.named(ErrorCode.INTERNAL, IMAGE_NOT_PREPARED, detail=str(exc)))
            return
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            await self._fail(job_id, _crashed(job_id, exc))
            return
        await self._complete(job_id, key, None)

    async def _complete(self, job_id: str, key: str, started: float | None) -> None:
        done = await repository.complete_job(job_id, processed_key=key)
        if done is not None:
            metrics.JOBS_COMPLETED.inc()
            _observe_end_to_end(done)
            seconds = round(time.monotonic() - started, 3) if started is not None else None
            log.info("restore.completed", extra={"job_id": job_id, "seconds": seconds})
            await self._changed(done)

    async def _process(self, job: RestorationJob) -> str:
        prompt_id = str(job.id)
        try:
            original = await self.storage.get_bytes(job.original_key)
        except StorageError as exc:
            raise StorageError(
                f"could not read the original {job.original_key}: {exc}", public_message=ORIGINAL_UNREADABLE
            ) from exc
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
                log.info("restore.comfy.queued", extra={"job_id": prompt_id, "prompt_id": prompt_id})
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
            raise StorageError(f"could not store the result {key}: {exc}", public_message=RESULT_NOT_STORED) from exc
        return key

    def _progress_sink(self, job_id: str) -> Callable[[float], Awaitable[None]]:
        async def sink(value: float) -> None:
            try:
                job = await repository.set_progress(job_id, round(value, 4))
            except DatabaseUnavailable:
                log.warning("restore.progress_not_saved", extra={"job_id": job_id, "reason": "database unavailable"})
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

    async def _fail(self, job_id: str, failure: Failure) -> None:
        log.warning(
            "restore.failed",
            extra={
                "job_id": job_id,
                "code": failure.code.value,
                "retryable": failure.retryable,
                "detail": failure.detail,
            },
        )
        failed = await repository.fail_job(
            job_id, message=failure.message, code=failure.code, retryable=failure.retryable
        )
        if failed is not None:
            metrics.JOBS_FAILED.labels(failure.code.value).inc()
            _observe_end_to_end(failed)
            await self._changed(failed)

    async def _cancel_quietly(self, prompt_id: str) -> None:
        with contextlib.suppress(ComfyError):
            await self.comfy.cancel(prompt_id)

    async def _changed(self, job: RestorationJob) -> None:
        if self.on_change is not None:
            await self.on_change(job)


def _crashed(job_id: str, exc: BaseException) -> Failure:
    """A bug of ours: the traceback goes to the log, the owner reads that it was ours."""
    log.error("restore.crashed", extra={"job_id": job_id, "detail": repr(exc)}, exc_info=exc)
    return Failure.named(ErrorCode.INTERNAL, INTERNAL_MESSAGE, detail=repr(exc))


def _observe_end_to_end(job: RestorationJob) -> None:
    if job.finished_at is not None:
        metrics.END_TO_END.observe(max(0.0, (job.finished_at - job.created_at).total_seconds()))
