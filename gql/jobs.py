"""The service functions behind both GraphQL and REST: submit a photo, read jobs.

Neither the resolvers nor the REST routes hold business logic; they call these.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from starlette.datastructures import UploadFile

from gql.context import Services
from gql.errors import BadInput, NotFound
from gql.uploads import check_size
from models import repository
from models.job import JobStatus, RestorationJob
from models.repository import Cursor, DatabaseUnavailable
from storage.errors import StorageError
from storage.images import inspect_image
from tasks import metrics
from tasks.events import JobEvent
from tasks.queue import QueueUnavailable

log = logging.getLogger("restore.api")

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class JobView:
    """A job as its owner sees it: URLs minted now, internals left out."""

    id: uuid.UUID
    status: JobStatus
    denoise: float
    original_image_url: str
    processed_image_url: str | None
    error_message: str | None
    progress: float | None
    created_at: datetime
    updated_at: datetime


def original_key(job_id: uuid.UUID, extension: str) -> str:
    return f"originals/{job_id}.{extension}"


class JobState(Protocol):
    """What a view is made from: a job row, or the state an event carries."""

    @property
    def id(self) -> uuid.UUID | str: ...
    @property
    def status(self) -> str: ...
    @property
    def denoise(self) -> float: ...
    @property
    def original_key(self) -> str: ...
    @property
    def processed_key(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def view_of(job: JobState, services: Services) -> JobView:
    status = JobStatus(job.status)
    key = job.processed_key if status is JobStatus.COMPLETED else None
    processed = services.urls.url_for(key) if key else None
    return JobView(
        id=job.id if isinstance(job.id, uuid.UUID) else uuid.UUID(job.id),
        status=status,
        denoise=job.denoise,
        original_image_url=services.urls.url_for(job.original_key),
        processed_image_url=processed,
        error_message=job.error_message if status is JobStatus.FAILED else None,
        progress=job.progress if status is JobStatus.PROCESSING else None,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


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


async def submit_restoration(
    *, services: Services, user_id: str, upload: UploadFile, denoise: object = None
) -> JobView:
    """Validate the upload, store the original, record the job, then queue it.

    Order matters: the original is in storage before the row exists, and the row is committed
    before the task is queued. When a later step fails, the earlier ones are undone, so a
    refused request leaves neither a job nor an object behind.
    """
    started = time.perf_counter()
    view = await _submit(services=services, user_id=user_id, upload=upload, denoise=denoise)
    metrics.UPLOAD.observe(time.perf_counter() - started)
    metrics.JOBS_CREATED.inc()
    return view


async def _submit(*, services: Services, user_id: str, upload: UploadFile, denoise: object) -> JobView:
    value = parse_denoise(denoise, default=services.default_denoise)
    check_size(upload, limit=services.max_upload_bytes)
    upload.file.seek(0)
    async with services.decode_slots:
        info = await asyncio.to_thread(inspect_image, upload.file, max_pixels=services.max_image_pixels)
    job_id = uuid.uuid4()
    key = original_key(job_id, info.extension)
    upload.file.seek(0)
    await services.storage.put_file(key, upload.file, content_type=info.content_type)
    try:
        job = await repository.create_job(job_id=job_id, user_id=user_id, denoise=value, original_key=key)
    except DatabaseUnavailable:
        await _forget_object(services, key)
        raise
    try:
        await services.queue.enqueue(job_id)
    except QueueUnavailable:
        with contextlib.suppress(DatabaseUnavailable):
            await repository.delete_job(job_id)
        await _forget_object(services, key)
        raise
    log.info("restore.submitted job_id=%s format=%s bytes=%s", job_id, info.format, upload.size)
    return view_of(job, services)


async def _forget_object(services: Services, key: str) -> None:
    try:
        await services.storage.delete(key)
    except StorageError:
        log.warning("restore.orphan_object key=%s (could not delete after a failed submit)", key)


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
    return view_of(job, services)


@dataclass(frozen=True)
class JobPage:
    jobs: list[tuple[str, JobView]]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.jobs[-1][0] if self.jobs else None


async def list_jobs(
    *, services: Services, user_id: str, first: int = 20, after: str | None = None, status: JobStatus | None = None
) -> JobPage:
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise BadInput(f"first must be between 1 and {MAX_PAGE_SIZE}")
    cursor = decode_cursor(after) if after else None
    rows, more = await repository.list_user_jobs(user_id, first=first, after=cursor, status=status)
    return JobPage(jobs=[(encode_cursor(row), view_of(row, services)) for row in rows], has_next_page=more)


def encode_cursor(job: RestorationJob) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    """An opaque position; it only orders, so a cursor made from another user's job reveals nothing."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created, _, job_id = raw.partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return Cursor(created_at=moment, id=uuid.UUID(job_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput("invalid cursor") from None


# How long a new watcher waits for the API's event subscription to be up before giving up.
EVENTS_CONNECT_WAIT = 5.0


async def watch_job(*, services: Services, user_id: str, job_id: str) -> AsyncIterator[JobView]:
    """The job's current state, then every change, ending after a terminal state.

    Registers for events FIRST and reads the row SECOND, so nothing published in between is
    lost; events not newer than what was already sent (by `seq`) are skipped.
    """
    parsed = parse_job_id(job_id)
    if parsed is None:
        raise NotFound("job not found")
    await services.events.wait_connected(within=EVENTS_CONNECT_WAIT)
    async with services.events.watch(str(parsed)) as feed:
        job = await repository.get_user_job(parsed, user_id)
        if job is None:
            raise NotFound("job not found")
        yield view_of(job, services)
        if JobStatus(job.status).terminal:
            return
        seen = job.seq
        async for event in feed:
            if event.seq <= seen:
                continue
            seen = event.seq
            yield services.views.get((event.id, event.seq), functools.partial(view_of, event, services))
            if event.terminal:
                return


async def current_event(job_id: str) -> JobEvent | None:
    """The row as an event, for catching watchers up after the event stream reconnects."""
    job = await repository.get_job(job_id)
    return JobEvent.of(job) if job is not None else None
