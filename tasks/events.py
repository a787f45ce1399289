"""Job events on Redis pub/sub: what an event is, and the worker's side (publishing).

One channel carries every job's events (the job id is inside), so an API process needs exactly
one subscription, made once at start-up, whatever the number of watchers. Each event carries the
whole job state and the row's `seq`, which grows with every change: a watcher drops anything
not newer than what it already has and can tell when it missed something. The same channel
carries one tiny `QueueMoved` per job start (no job state: the API re-reads the positions of
its pending watchers); `decode_message` tells the two apart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models.job import JobStatus, RestorationJob

log = logging.getLogger("restore.events")

CHANNEL = "restoration:job-events"


@dataclass(frozen=True)
class JobEvent:
    """A job's whole state after one change."""

    id: str
    seq: int
    status: str
    denoise: float
    original_key: str
    processed_key: str | None
    error_message: str | None
    progress: float | None
    created_at: datetime
    updated_at: datetime
    # Defaulted (and last) so events published by a worker of the previous version still decode.
    error_code: str | None = None
    retryable: bool | None = None
    # The owner, so the API can route the event to `jobsUpdated` watchers; None in old events.
    user_id: str | None = None

    @property
    def terminal(self) -> bool:
        return JobStatus(self.status).terminal

    @property
    def is_progress(self) -> bool:
        """A progress-only update: droppable, a later event carries a newer state anyway."""
        return self.status == JobStatus.PROCESSING and self.progress is not None and self.progress > 0

    @classmethod
    def of(cls, job: RestorationJob) -> JobEvent:
        return cls(
            id=str(job.id),
            seq=job.seq,
            status=JobStatus(job.status).value,
            denoise=job.denoise,
            original_key=job.original_key,
            processed_key=job.processed_key,
            error_message=job.error_message,
            progress=job.progress,
            created_at=job.created_at,
            updated_at=job.updated_at,
            error_code=job.error_code.value if job.error_code else None,
            retryable=job.retryable,
            user_id=job.user_id,
        )

    def encode(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> JobEvent:
        data = json.loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["updated_at"] = datetime.fromisoformat(data["updated_at"])
        return cls(**data)


QUEUE_MOVED = "queue-moved"


@dataclass(frozen=True)
class QueueMoved:
    """A job left the queue (started or withdrawn): the pending jobs behind it moved up."""

    def encode(self) -> str:
        return json.dumps({"kind": QUEUE_MOVED}, separators=(",", ":"))


def decode_message(raw: str | bytes) -> JobEvent | QueueMoved:
    """Either message of the channel (ValueError, TypeError or KeyError when it is neither)."""
    data = json.loads(raw)
    if isinstance(data, dict) and data.get("kind") == QUEUE_MOVED:
        return QueueMoved()
    return JobEvent.decode(raw)


class EventPublisher:
    """The worker's side: publish a job's new state. Publishing is best effort: the database row
    is the truth, and a watcher that missed an event still gets the terminal state (the API
    re-reads the row when its subscription reconnects)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def publish(self, job: RestorationJob) -> None:
        try:
            await self._client.publish(CHANNEL, JobEvent.of(job).encode())
        except (RedisError, OSError) as exc:
            log.warning("events.publish_failed", extra={"job_id": job.id, "error": repr(exc)})
