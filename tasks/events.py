"""Job events on Redis pub/sub: the worker publishes every change of a job, the API fans them out.

One channel carries every job's events (the job id is inside), so an API process needs exactly
one subscription, made once at start-up, whatever the number of watchers. Each event carries the
whole job state and the row's `seq`, which grows with every change: a watcher drops anything
not newer than what it already has and can tell when it missed something.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
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
            log.warning("events.publish_failed job_id=%s error=%r", job.id, exc)


# -- the API's side: one subscription per process, fanned out to local watchers -----------------

# Small on purpose: a watcher that cannot keep up loses intermediate progress, never a status.
SUBSCRIBER_BUFFER = 16
RECONNECT_MIN_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0


class Subscriber:
    """One watcher's bounded buffer of events for one job."""

    def __init__(self, job_id: str, *, maxlen: int = SUBSCRIBER_BUFFER) -> None:
        self.job_id = job_id
        self.dropped = 0
        self._maxlen = maxlen
        self._buffer: deque[JobEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, event: JobEvent) -> None:
        if len(self._buffer) >= self._maxlen:
            victim = next((queued for queued in self._buffer if queued.is_progress), None)
            if victim is not None:
                self._buffer.remove(victim)
                self.dropped += 1
            elif event.is_progress:
                self.dropped += 1
                return
        self._buffer.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> JobEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()


class EventStreamUnavailable(Exception):
    """The API is not subscribed to the event channel (Redis unreachable)."""

    kind = "events"

    def __init__(self) -> None:
        super().__init__("live updates unavailable")


Resync = Callable[[str], Awaitable[JobEvent | None]]


class JobEventHub:
    """Holds the process's ONE pub/sub connection and hands each event to the local watchers of
    its job. After a reconnect, every watched job is re-read (`resync`), because events published
    while the connection was down are gone."""

    def __init__(self, client: aioredis.Redis, *, resync: Resync | None = None, buffer_size: int = SUBSCRIBER_BUFFER):
        self._client = client
        self._resync = resync
        self._buffer_size = buffer_size
        self._watchers: dict[str, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def watcher_count(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="job-event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()
        self.connected.clear()

    async def wait_connected(self, *, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self.connected.wait()
        except TimeoutError:
            raise EventStreamUnavailable() from None

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[Subscriber]:
        """Register a watcher for `job_id`; events published from now on reach it."""
        watcher = Subscriber(job_id, maxlen=self._buffer_size)
        self._watchers.setdefault(job_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[job_id]

    def dispatch(self, raw: str | bytes) -> None:
        try:
            event = JobEvent.decode(raw)
        except (ValueError, TypeError, KeyError):
            log.warning("events.undecodable %r", raw[:200])
            return
        for watcher in self._watchers.get(event.id, ()):
            watcher.offer(event)

    async def _listen(self) -> None:
        delay = RECONNECT_MIN_DELAY
        first = True
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected.set()
                delay = RECONNECT_MIN_DELAY
                if not first:
                    await self._resync_all()
                first = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.dispatch(message["data"])
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("events.disconnected error=%r", exc)
                self.connected.clear()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _resync_all(self) -> None:
        if self._resync is None:
            return
        for job_id in list(self._watchers):
            try:
                event = await self._resync(job_id)
            except Exception:  # a watcher keeps its stream; it only misses this catch-up
                log.exception("events.resync_failed job_id=%s", job_id)
                continue
            if event is not None:
                for watcher in self._watchers.get(job_id, ()):
                    watcher.offer(event)
