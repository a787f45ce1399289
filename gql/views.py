"""What clients see of a job: `JobView` (URLs minted at read time), its conversions, and cursors.

REST and GraphQL both present `JobView`s; this is the one place a job row or a job event becomes
one. Signed URLs expire, so they are minted here, per read, from the stored keys; a job's place
in the queue and its ETA are read from Redis per read too (`placed`), never stored in a view
that is shared.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from gql.errors import BadInput
from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from models.repository import Cursor
from storage.urls import ImageUrls
from tasks.estimates import UNKNOWN, Asked
from tasks.queue import JobQueue


@dataclass(frozen=True)
class JobView:
    """A job as its owner sees it: URLs minted now, internals left out."""

    id: uuid.UUID
    status: JobStatus
    denoise: float
    original_image_url: str
    processed_image_url: str | None
    error_message: str | None
    error_code: ErrorCode | None
    retryable: bool | None
    progress: float | None
    created_at: datetime
    updated_at: datetime
    # Read per view from the queue (`placed`): the 1-based start order of a pending job among all
    # pending jobs, and the seconds until a pending or processing job is done; None otherwise.
    queue_position: int | None = None
    eta_seconds: float | None = None


# Only these can have a place in the queue or an ETA.
WAITING = (JobStatus.PENDING, JobStatus.PROCESSING)


async def placed(views: list[JobView], queue: JobQueue) -> list[JobView]:
    """The views with their queue position and ETA, read in one round trip for the whole list;
    unchanged (nulls) when Redis cannot be read."""
    asked = [
        Asked(id=str(view.id), status=view.status, progress=view.progress) for view in views if view.status in WAITING
    ]
    if not asked:
        return views
    standings = await queue.standings(asked)
    return [dataclasses.replace(view, **dataclasses.asdict(standings.get(str(view.id), UNKNOWN))) for view in views]


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
    def error_code(self) -> str | None: ...
    @property
    def retryable(self) -> bool | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def view_of(job: JobState, urls: ImageUrls) -> JobView:
    status = JobStatus(job.status)
    key = job.processed_key if status is JobStatus.COMPLETED else None
    processed = urls.url_for(key) if key else None
    failed = status is JobStatus.FAILED
    # An old failed row or event may lack a code; the contract promises one on every failed job.
    code = (ErrorCode(job.error_code) if job.error_code else ErrorCode.INTERNAL) if failed else None
    return JobView(
        id=job.id if isinstance(job.id, uuid.UUID) else uuid.UUID(job.id),
        status=status,
        denoise=job.denoise,
        original_image_url=urls.url_for(job.original_key),
        processed_image_url=processed,
        error_message=job.error_message if failed else None,
        error_code=code,
        retryable=(bool(job.retryable) if job.retryable is not None else code.retryable) if code else None,
        progress=job.progress if status is JobStatus.PROCESSING else None,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


@dataclass(frozen=True)
class JobPage:
    jobs: list[tuple[str, JobView]]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.jobs[-1][0] if self.jobs else None


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


V = TypeVar("V")

# Views minted for events, shared by every watcher of the job (one set of signed URLs per event
# instead of one per watcher); a few per live job is plenty.
VIEW_CACHE_SIZE = 4096


class SmallCache(Generic[V]):
    """A bounded least-recently-used map, for values that are costly to build and never change."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = build()
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value
