"""The restoration pipeline one job goes through in the worker.

claim (pending → processing) → download the original → prepare it for ComfyUI (as it is, or
re-encoded) → hold a slot on a reachable server (least loaded first) → upload it into that slot's
input file → queue the prompt (prompt_id = job id) → wait for it → give the slot back at once →
fetch the output → strip ComfyUI's metadata → store `restored/{id}.png` → completed.

Cancellation. While the job runs, its row is watched (`tasks.job_watch`): once its owner has
cancelled it, a prompt not yet sent is never sent, a sent one is withdrawn from ComfyUI (deleted
from the queue while it waits, interrupted while it runs), the slot is given back at once, and
nothing is stored. Every terminal transition is conditional, so when ComfyUI finishes as the
cancel lands exactly one of `completed` / `cancelled` wins; a result stored for a job whose
cancel won is deleted again.

A server that cannot even be connected to before the prompt was sent is marked down and the job
goes to another server (it was never sent, so this is not a retry); once sent, a failure fails
the job with the contract's code (`tasks.failures`), nothing is retried (fail fast). The whole
run is bounded by `job_timeout`: on expiry the prompt is removed from ComfyUI's queue or
interrupted; a job that found no reachable server in that time fails COMFYUI_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from comfy.client import ComfyClient, Withdrawal, output_image, settle_entry
from comfy.errors import ComfyError, ComfyUnavailable, ComfyUnreachable
from comfy.images import ComfyInput, ImageRejected, prepare_for_comfy, strip_png_metadata
from comfy.messages import Message
from comfy.progress import ProgressTracker
from comfy.servers import ComfyServers
from models import repository
from models.error_codes import ErrorCode, JobFailure
from models.job import JobStatus, RestorationJob
from models.repository import DatabaseUnavailable
from storage.base import ObjectStore
from storage.errors import StorageError
from storage.keys import restored_key
from tasks import metrics
from tasks.failures import (
    IMAGE_NOT_PREPARED,
    ORIGINAL_UNREADABLE,
    RESULT_NOT_STORED,
    WORKER_LOST,
    WORKER_LOST_UNREACHABLE,
    Failure,
    crashed,
    no_server,
)
from tasks.held_slot import GiveBack, HeldSlot
from tasks.job_watch import CANCEL_POLL_SECONDS, JobWatch, Stopped, watching
from tasks.progress import ProgressReporter
from tasks.scheduler import Slot, SlotBoard
from workflows.binding import Workflow

log = logging.getLogger("restore.pipeline")

# ComfyUI input subfolder for our uploads; one file per slot of the server (ComfyUI's /prompt
# lists the input folder, so one file per job would slow every later prompt down).
INPUT_SUBFOLDER = "restore"
# How long a claim stays valid without the worker renewing it (the reconciler's yardstick).
LEASE_SECONDS = 60.0

JobListener = Callable[[RestorationJob], Awaitable[None]]
Requeue = Callable[[str], Awaitable[None]]


class _NotSent(Exception):
    """The slot's server vanished before the prompt was sent: the job goes back to the queue."""


@dataclass
class Restorer:
    servers: ComfyServers
    slots: SlotBoard
    storage: ObjectStore
    workflow: Workflow
    worker_id: str
    job_timeout: float
    on_change: JobListener | None = None
    lease_seconds: float = LEASE_SECONDS
    # How a slot goes back: the worker's `SlotGate.release`, which also wakes its waiting threads.
    give_back: GiveBack | None = None
    # How a job whose server vanished before its prompt was sent goes back to the head of the queue
    # (`JobQueue.enqueue_first`); without it the job waits here for another server.
    requeue: Requeue | None = None
    # How often a running job's row is read to notice that its owner cancelled it.
    cancel_poll: float = CANCEL_POLL_SECONDS

    async def run(self, job_id: str, slot: Slot | None = None) -> None:
        """Process one job end to end; never raises for a job-level failure.

        `slot` is the one the worker's gate reserved before taking the message (None: one is
        reserved here). While it runs, the job's lease and the slot's are renewed; if this process
        dies, both run out and the reconciler settles the job from ComfyUI's own record.
        """
        held = HeldSlot(
            servers=self.servers, slots=self.slots, worker_id=self.worker_id, give_back=self.give_back, slot=slot
        )
        try:
            await self._run(job_id, held)
        finally:
            await held.release()

    async def _run(self, job_id: str, held: HeldSlot) -> None:
        try:
            job = await repository.claim_job(job_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds)
        except DatabaseUnavailable:
            log.error("restore.claim_failed", extra={"job_id": job_id, "reason": "database unavailable"})
            return
        if job is None:
            log.info("restore.skipped", extra={"job_id": job_id, "reason": "not pending"})
            return
        started = time.monotonic()
        if job.started_at is not None:
            metrics.QUEUE_WAIT.observe(max(0.0, (job.started_at - job.created_at).total_seconds()))
        log.info("restore.started", extra={"job_id": job_id})
        heartbeat = asyncio.create_task(self._heartbeat(job_id, held), name=f"lease-{job_id}")
        try:
            async with watching(job_id, interval=self.cancel_poll) as watch:
                await self._run_claimed(job, started, held, watch)
        except DatabaseUnavailable:
            log.error("restore.unsettled", extra={"job_id": job_id, "reason": "database unavailable"})
        finally:
            heartbeat.cancel()
            await asyncio.wait([heartbeat])  # without absorbing a cancellation of this job

    async def _run_claimed(self, job: RestorationJob, started: float, held: HeldSlot, watch: JobWatch) -> None:
        job_id = str(job.id)
        deadline = asyncio.timeout(self.job_timeout)
        try:
            async with deadline:
                key = await self._process(job, held, watch)
        except _NotSent:
            await self._back_to_queue(job_id)
        except Stopped as exc:
            await self._withdraw(job_id, held, exc.status)
        except TimeoutError as exc:
            if not deadline.expired():  # a timeout of something inside, not the job's own
                await self._fail(job_id, crashed(job_id, exc))
            elif held.waiting:
                await self._fail(job_id, no_server(tried=self.servers.urls, seconds=self.job_timeout))
            else:
                await self._cancel_quietly(held.client, job_id)
                await self._fail(job_id, self._timed_out())
        except JobFailure as exc:
            await self._fail(job_id, Failure.of(exc))
        except ImageRejected as exc:
            await self._fail(job_id, Failure.named(ErrorCode.INTERNAL, IMAGE_NOT_PREPARED, detail=str(exc)))
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            await self._fail(job_id, crashed(job_id, exc))
        else:
            await self._complete(job_id, key, started)

    async def _back_to_queue(self, job_id: str) -> None:
        again = await repository.unclaim_job(job_id, worker_id=self.worker_id)
        if again is None or self.requeue is None:
            return
        log.info(
            "restore.requeued", extra={"job_id": job_id, "reason": "its server vanished before the prompt was sent"}
        )
        await self._changed(again)
        try:
            await self.requeue(job_id)
        except Exception:  # the reconciler queues again a pending job whose message is missing
            log.warning("restore.requeue_failed", extra={"job_id": job_id})

    def _timed_out(self) -> Failure:
        return Failure.named(ErrorCode.TIMEOUT, f"the job did not finish within {self.job_timeout:g} s")

    async def _heartbeat(self, job_id: str, held: HeldSlot) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await held.renew()
            try:
                if not await repository.renew_lease(job_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds):
                    return
            except DatabaseUnavailable:
                log.warning("restore.lease_not_renewed", extra={"job_id": job_id})

    async def _process(self, job: RestorationJob, held: HeldSlot, watch: JobWatch) -> str:
        # The `processing` event goes out while the original is read (publishing never raises).
        original, _ = await asyncio.gather(self._read_original(job), self._changed(job))
        prepared = await asyncio.to_thread(prepare_for_comfy, original)
        while True:
            slot = await held.ensure(watch)
            client = self.servers.client(slot.server)
            try:
                entry = await self._send(job, prepared, slot, client, held, watch)
            except ComfyUnreachable as exc:
                if held.sent:
                    raise
                # Never sent: this server is gone for now; the job goes to another one, through
                # the queue (so no worker thread waits here while no server is reachable).
                self.servers.mark_down(slot.server, reason=str(exc))
                await held.release()
                if self.requeue is not None:
                    raise _NotSent() from exc
                continue
            await held.release()  # the next prompt may go in while this result is stored
            watch.check()  # ComfyUI finished as the cancel landed: the result is not fetched
            return await self._store_result(job, client, entry)

    async def _read_original(self, job: RestorationJob) -> bytes:
        try:
            return await self.storage.get_bytes(job.original_key)
        except StorageError as exc:
            raise StorageError(
                f"could not read the original {job.original_key}: {exc}", public_message=ORIGINAL_UNREADABLE
            ) from exc

    async def _send(
        self,
        job: RestorationJob,
        prepared: ComfyInput,
        slot: Slot,
        client: ComfyClient,
        held: HeldSlot,
        watch: JobWatch,
    ) -> dict[str, Any]:
        """Upload the input into the slot's file, queue the prompt, and wait for ComfyUI to finish
        it; Stopped when the job is cancelled before the prompt is sent or while ComfyUI has it."""
        prompt_id = str(job.id)
        # Where the prompt goes is on the row before it is sent; recorded while the input uploads.
        image_name, recorded = await asyncio.gather(
            client.upload_image(
                prepared.data, name=f"slot-{slot.index}.{prepared.extension}", subfolder=INPUT_SUBFOLDER
            ),
            repository.record_server(prompt_id, worker_id=self.worker_id, server=slot.server),
        )
        prompt = self.workflow.build(
            image_name=image_name, denoise=job.denoise, filename_prefix=f"restore/{job.id}/restored"
        )
        if not recorded:
            # No longer processing for this worker (cancelled meanwhile): the prompt is never sent.
            raise Stopped(await repository.job_status(prompt_id))
        tracker = ProgressTracker(prompt)
        async with client.watch(prompt_id), ProgressReporter(self._progress_sink(prompt_id)) as reporter:

            def on_event(message: Message) -> None:
                value = tracker.feed(message)
                if value is not None:
                    reporter.update(value)

            await client.queue_prompt(prompt, prompt_id=prompt_id)
            held.sent = True
            log.info("restore.comfy.queued", extra={"job_id": prompt_id, "prompt_id": prompt_id, "server": slot.server})
            with metrics.COMFY_EXECUTION.time():
                return await watch.until_stopped(client.wait(prompt_id, on_event=on_event))

    async def _withdraw(self, job_id: str, held: HeldSlot, status: JobStatus | None) -> None:
        """The job stopped being ours while it ran (its owner cancelled it): its prompt, if sent,
        is taken out of ComfyUI, and the slot is given back at once. Nothing is stored, and the
        job's state is not touched (whoever ended it published it)."""
        outcome: Withdrawal | None = None
        if held.sent and held.client is not None:
            try:
                outcome = await held.client.cancel(job_id)
            except ComfyError as exc:  # the server is away: the prompt dies with it or runs out alone
                log.warning("restore.withdraw_failed", extra={"job_id": job_id, "error": str(exc)})
        await held.release()
        if status is JobStatus.CANCELLED and (outcome is not None or not held.sent):
            with contextlib.suppress(DatabaseUnavailable):  # else the reconciler withdraws it again
                await repository.prompt_withdrawn(job_id)
        log.info(
            "restore.cancelled" if status is JobStatus.CANCELLED else "restore.settled_elsewhere",
            extra={
                "job_id": job_id,
                "prompt_id": job_id,
                "status": status.value if status else None,
                "prompt": outcome.value if outcome else "not sent",
            },
        )

    async def settle(self, job: RestorationJob) -> None:
        """Settle a job whose worker is gone, from ComfyUI's own record (the job id is the prompt id).

        Finished in ComfyUI → fetch and store the result, completed. Failed there → failed with
        ComfyUI's reason. Still queued or running → left alone until its deadline, then cancelled
        (TIMEOUT). Unknown to ComfyUI, or ComfyUI unreachable past the deadline → JOB_LOST.
        """
        job_id = str(job.id)
        deadline_passed = job.started_at is not None and (time.time() - job.started_at.timestamp() > self.job_timeout)
        if job.comfy_server is None or job.comfy_server not in self.servers.urls:
            # Never sent (or to a server this worker does not know): nothing to recover.
            await self._fail(
                job_id, Failure.named(ErrorCode.JOB_LOST, WORKER_LOST, detail=f"worker {job.worker_id} lost")
            )
            return
        client = self.servers.client(job.comfy_server)
        try:
            entry = await client.history(job_id)
            if entry is None:
                running, pending = await client.queue_ids()
                if job_id not in running | pending:
                    await self._fail(
                        job_id,
                        Failure.named(
                            ErrorCode.JOB_LOST, WORKER_LOST, detail=f"worker {job.worker_id} lost; prompt unknown"
                        ),
                    )
                elif deadline_passed:
                    await self._cancel_quietly(client, job_id)
                    await self._fail(job_id, self._timed_out())
                return
            settle_entry(entry)
            key = await self._store_result(job, client, entry)
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
            await self._fail(job_id, crashed(job_id, exc))
            return
        await self._complete(job_id, key, None)

    async def _complete(self, job_id: str, key: str, started: float | None) -> None:
        done = await repository.complete_job(job_id, processed_key=key)
        if done is None:
            await self._discard_result(job_id, key)
            return
        metrics.JOBS_COMPLETED.inc()
        if done.comfy_server:
            metrics.SERVER_DONE.labels(done.comfy_server).inc()
        _observe_end_to_end(done)
        seconds = round(time.monotonic() - started, 3) if started is not None else None
        log.info("restore.completed", extra={"job_id": job_id, "seconds": seconds})
        await self._changed(done)

    async def _discard_result(self, job_id: str, key: str) -> None:
        """The result was stored but the job ended otherwise meanwhile (its cancel won the race):
        the object goes again, unless the job did complete with it (settled twice)."""
        status = await repository.job_status(job_id)
        if status is JobStatus.COMPLETED:
            return
        if status is JobStatus.CANCELLED:  # its prompt ran to its end: nothing to withdraw
            with contextlib.suppress(DatabaseUnavailable):
                await repository.prompt_withdrawn(job_id)
        try:
            await self.storage.delete(key)
        except StorageError as exc:
            log.warning("restore.orphan_result", extra={"job_id": job_id, "key": key, "error": str(exc)})
            return
        log.info("restore.result_discarded", extra={"job_id": job_id, "reason": "the job ended otherwise first"})

    async def _store_result(self, job: RestorationJob, client: ComfyClient, entry: dict[str, object]) -> str:
        """Fetch the output image of a finished prompt, strip ComfyUI's metadata, store it."""
        result = await client.view(output_image(entry, self.workflow.output_node))
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
            if failed.comfy_server:
                metrics.SERVER_FAILED.labels(failed.comfy_server).inc()
            _observe_end_to_end(failed)
            await self._changed(failed)

    async def _cancel_quietly(self, client: ComfyClient | None, prompt_id: str) -> None:
        if client is not None:
            with contextlib.suppress(ComfyError):
                await client.cancel(prompt_id)

    async def _changed(self, job: RestorationJob) -> None:
        if self.on_change is not None:
            await self.on_change(job)


def _observe_end_to_end(job: RestorationJob) -> None:
    if job.finished_at is not None:
        metrics.END_TO_END.observe(max(0.0, (job.finished_at - job.created_at).total_seconds()))
