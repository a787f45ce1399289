"""The service functions behind both GraphQL and REST: submit a photo, read, list and cancel jobs
(watching them is `gql.watching`).

Neither the resolvers nor the REST routes hold business logic; they call these.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO

from redis.exceptions import RedisError
from starlette.datastructures import UploadFile

from gql.context import Services
from gql.errors import BadInput, Conflict, NotFound, TooManyPendingJobs
from gql.idempotency import Claim, Content, Replay, holding, parse_key
from gql.intake import ImageInfo, inspect_image
from gql.uploads import HashedUpload, check_size
from gql.views import JobPage, JobView, decode_cursor, encode_cursor, placed, view_of
from models import repository
from models.job import JobStatus, RestorationJob
from models.repository import DatabaseUnavailable
from storage.errors import StorageError
from storage.keys import original_key
from tasks import metrics
from tasks.events import CHANNEL, JobEvent
from tasks.queue import QueueUnavailable

log = logging.getLogger("restore.api")

MAX_PAGE_SIZE = 100
# Pieces in which an upload not hashed while it was spooled is read to hash it.
HASH_CHUNK_BYTES = 1024 * 1024
# Every status the contract names, as REST spells them.
CONTRACT_STATUSES = tuple(member.value for member in JobStatus)


def parse_denoise(value: object, *, default: float) -> float:
    """A finite number in 0..1; None means the workflow's own value."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise BadInput("denoise must be a number between 0.0 and 1.0")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadInput("denoise must be a number between 0.0 and 1.0") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise BadInput("denoise must be a number between 0.0 and 1.0")
    return number


@dataclass(frozen=True)
class Submission:
    """A submit's answer: the job, and whether it is the one an earlier request with the same
    idempotency key made (nothing new was stored or queued)."""

    job: JobView
    replayed: bool = False


async def submit_restoration(
    *,
    services: Services,
    user_id: str,
    upload: UploadFile,
    denoise: object = None,
    idempotency_key: object = None,
) -> Submission:
    """Validate a multipart upload, then `create_job` with it (the original is PUT from the spool).

    With an idempotency key, the key is claimed once the body is read (its digest was computed
    while it streamed) and before anything is judged or stored; a replay answers the key's job.
    """
    started = time.perf_counter()
    value = parse_denoise(denoise, default=services.default_denoise)
    key = parse_key(idempotency_key)
    digest = await digest_of(upload) if key is not None else None
    claim = None
    if key is not None:
        outcome = await services.idempotency.claim(
            user_id=user_id, key=key, content=Content(denoise=value, digest=digest)
        )
        if isinstance(outcome, Replay):
            return await replay(services=services, user_id=user_id, job_id=outcome.job_id)
        if not isinstance(outcome, Claim):  # content with a digest is always decided
            raise RuntimeError(f"an idempotency claim with a digest was left undecided: {outcome!r}")
        claim = outcome
    async with holding(claim):
        await check_pending_ceiling(services=services, user_id=user_id)  # before the costly judgement
        size = check_size(upload, limit=services.max_upload_bytes)
        info = await judge_photo(services=services, file=upload.file)

        async def store(key: str) -> None:
            upload.file.seek(0)
            await services.storage.put_file(key, upload.file, content_type=info.content_type)

        photo = JudgedPhoto(info=info, size=size, store=store, source="multipart", digest=digest)
        view = await create_job(
            services=services, user_id=user_id, denoise=value, photo=photo, started=started, claim=claim
        )
    return Submission(view)


async def digest_of(upload: UploadFile) -> str:
    """The upload's SHA-256, computed while it was spooled (`HashedUpload`); an upload parsed
    elsewhere (none in this app) is hashed here, in a thread."""
    if isinstance(upload, HashedUpload):
        return upload.digest

    def read_through() -> str:
        upload.file.seek(0)
        sha256 = hashlib.sha256()
        while chunk := upload.file.read(HASH_CHUNK_BYTES):
            sha256.update(chunk)
        upload.file.seek(0)
        return sha256.hexdigest()

    return await asyncio.to_thread(read_through)


async def replay(*, services: Services, user_id: str, job_id: str) -> Submission:
    """The job an earlier request with the same key made, answered again."""
    view = await get_job(services=services, user_id=user_id, job_id=job_id)
    log.info("restore.replayed", extra={"job_id": job_id, "user": user_id})
    return Submission(view, replayed=True)


async def judge_photo(*, services: Services, file: BinaryIO) -> ImageInfo:
    """The 413/415 judgement of a photo by its content (`inspect_image`), in a thread, at most
    `MAX_CONCURRENT_DECODES` at once."""
    file.seek(0)
    async with services.decode_slots:
        return await asyncio.to_thread(inspect_image, file, max_pixels=services.max_image_pixels)


@dataclass(frozen=True)
class JudgedPhoto:
    """An accepted photo, whichever way it came: what it is, and how to store it at a key."""

    info: ImageInfo
    size: int
    # Puts the photo's exact bytes at the given key (a PUT from a spool, or a copy inside the store).
    store: Callable[[str], Awaitable[None]]
    source: str  # "multipart" | "direct", for the log
    # Hex SHA-256 of its bytes, computed while they were read; None when no idempotency key needs it.
    digest: str | None = None


async def create_job(
    *,
    services: Services,
    user_id: str,
    denoise: float,
    photo: JudgedPhoto,
    started: float,
    claim: Claim | None = None,
) -> JobView:
    """Store the original, record the job, then queue it: the one path every submission takes.

    Order matters: the original is in storage before the row exists, and the row is committed
    before the task is queued. When a later step fails, the earlier ones are undone, so a
    refused request leaves neither a job nor an object behind. An idempotency `claim` is
    completed with the job once it is queued (the caller releases it on failure: `holding`).
    """
    job_id = uuid.uuid4()
    key = original_key(job_id, photo.info.extension)
    try:
        await photo.store(key)
    except BaseException:  # a PUT cut short may still have left the object
        await _forget_object(services, key)
        raise
    try:
        job = await repository.create_job(job_id=job_id, user_id=user_id, denoise=denoise, original_key=key)
    except BaseException:  # unavailable or a bug: either way no job exists, so no object may stay
        await _forget_object(services, key)
        raise
    try:
        await services.queue.enqueue(
            job_id, user_id=user_id, megapixels=photo.info.width * photo.info.height / 1_000_000
        )
    except BaseException:
        with contextlib.suppress(DatabaseUnavailable):
            await repository.delete_job(job_id)
        await _forget_object(services, key)
        raise
    if claim is not None and photo.digest is not None:
        await claim.complete(job_id=job_id, digest=photo.digest)
    await _announce(services, job)
    log.info(
        "restore.submitted",
        extra={
            "job_id": job_id,
            "user": user_id,
            "format": photo.info.format,
            "bytes": photo.size,
            "source": photo.source,
        },
    )
    metrics.UPLOAD.observe(time.perf_counter() - started)
    metrics.JOBS_CREATED.inc()
    return await _placed(services, view_of(job, services.urls))


async def _announce(services: Services, job: RestorationJob) -> None:
    """Publish a change the API made (a new job's PENDING state, a job's CANCELLED), so watchers
    in every API process see it (the worker publishes every other change). Best effort, like the
    worker's publishing: the row is committed already, so a lost announcement must not refuse it
    (a watcher re-reads the row when its event stream reconnects)."""
    try:
        # The queue's Redis pool: the API's event client is kept to its one subscriber connection.
        await asyncio.to_thread(services.queue.huey.storage.conn.publish, CHANNEL, JobEvent.of(job).encode())
    except (RedisError, OSError) as exc:
        log.warning("events.publish_failed", extra={"job_id": job.id, "error": repr(exc)})


async def check_pending_ceiling(*, services: Services, user_id: str) -> None:
    """TooManyPendingJobs when the user already has MAX_PENDING_JOBS_PER_USER jobs pending; both
    submit paths call it first, before anything is judged, stored or taken."""
    limit = services.max_pending_jobs_per_user
    if limit is not None and await repository.count_pending_jobs(user_id) >= limit:
        log.info("restore.refused", extra={"user": user_id, "reason": "pending ceiling", "limit": limit})
        raise TooManyPendingJobs(limit)


async def _forget_object(services: Services, key: str) -> None:
    try:
        # Shielded: a submit cancelled mid-way (client gone, shutdown) still removes its object.
        await asyncio.shield(services.storage.delete(key))
    except StorageError:
        log.warning("restore.orphan_object", extra={"key": key, "note": "could not delete after a failed submit"})


def parse_job_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


async def get_job(*, services: Services, user_id: str, job_id: str) -> JobView:
    """The caller's job; NotFound when it does not exist or is someone else's (same answer)."""
    parsed = parse_job_id(job_id)
    job = await repository.get_user_job(parsed, user_id) if parsed else None
    if job is None:
        raise NotFound("job not found")
    return await _placed(services, view_of(job, services.urls))


async def _placed(services: Services, view: JobView) -> JobView:
    """The view with its queue position and ETA (nulls when Redis cannot be read)."""
    [view] = await placed([view], services.queue)
    return view


async def list_jobs(
    *,
    services: Services,
    user_id: str,
    first: int = 20,
    after: str | None = None,
    status: JobStatus | str | None = None,
) -> JobPage:
    """Up to `first` of the caller's jobs, newest first, after the cursor `after` (keyset: a
    cursor only orders, so one from another user's job reveals nothing). `status` as a string is
    one of `CONTRACT_STATUSES`; BadInput for anything else, or a bad `first` or `after`."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise BadInput(f"the page size must be between 1 and {MAX_PAGE_SIZE}")
    cursor = decode_cursor(after) if after is not None else None
    if isinstance(status, str) and not isinstance(status, JobStatus):
        if status not in CONTRACT_STATUSES:
            raise BadInput(f"status must be one of {', '.join(CONTRACT_STATUSES)}")
        status = JobStatus(status)
    rows, more = await repository.list_user_jobs(user_id, first=first, after=cursor, status=status)

    def page() -> list[tuple[str, JobView]]:
        return [(encode_cursor(row), view_of(row, services.urls)) for row in rows]

    # Signing two URLs per job (RSA for CloudFront) is CPU work: a page of them is built off the
    # event loop, so one large page does not stall every other request.
    jobs = await asyncio.to_thread(page)
    views = await placed([view for _, view in jobs], services.queue)  # one Redis round trip
    return JobPage(jobs=[(cursor, view) for (cursor, _), view in zip(jobs, views, strict=True)], has_next_page=more)


async def cancel_job(*, services: Services, user_id: str, job_id: str) -> JobView:
    """Cancel the caller's job: a pending one is `cancelled` at once (and never sent to ComfyUI:
    the worker's claim refuses it); a processing one too, and its worker, which watches the row,
    withdraws the prompt from ComfyUI and gives the slot back within seconds. NotFound when the job
    does not exist or is someone else's; Conflict (job unchanged) when it had already finished.

    One conditional update does it (`pending|processing → cancelled`), so a cancel racing the
    worker's claim or its completion has exactly one outcome. The original stays in storage.
    """
    parsed = parse_job_id(job_id)
    job = await repository.cancel_job(parsed, user_id) if parsed else None
    if job is None:
        current = await repository.get_user_job(parsed, user_id) if parsed else None
        if current is None:
            raise NotFound("job not found")
        raise Conflict(f"the job is already {JobStatus(current.status).value}")
    if job.started_at is None:  # it was pending: its queue place goes now, so the places behind it move up
        try:
            await services.queue.withdraw(job.id)
        except QueueUnavailable:  # best effort: the worker's claim refuses the message anyway
            log.warning("restore.withdraw_failed", extra={"job_id": job.id})
    # Every watcher of the job (and of the owner's jobs) sees CANCELLED now: the worker publishes
    # nothing for it, the cancelled job being no longer its own.
    await _announce(services, job)
    metrics.JOBS_CANCELLED.inc()
    log.info("restore.cancel_requested", extra={"job_id": job.id, "user": user_id, "worker": job.worker_id})
    return view_of(job, services.urls)
