"""The API's one pub/sub connection on the job-event channel, fanned out to local watchers.

An API process subscribes once at start-up, whatever the number of watchers. A watcher follows
one job (`watch`, for `jobUpdated`) or every job of one user (`watch_user`, for `jobsUpdated`,
routed by the event's `user_id`); each has a small bounded buffer (progress may be dropped,
statuses never). Events published while the connection was down are gone, so after a reconnect
every watched job is re-read (`resync`), and every user with a watcher is caught up on each of
their jobs that changed since the connection was lost (`catch_up`: jobs submitted through another
API process and finished meanwhile included), newest state only, oldest change first.
A "queue moved" message (a job started) nudges every watcher, at most once per
`QUEUE_MOVED_INTERVAL`, so the positions of pending jobs are re-read and re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tasks.events import CHANNEL, JobEvent, QueueMoved, decode_message

log = logging.getLogger("restore.events")

# Small on purpose: a watcher that cannot keep up loses intermediate progress, never a status.
SUBSCRIBER_BUFFER = 16
RECONNECT_MIN_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0
# Positions change with every start; a pending job's watcher is told at most this often.
QUEUE_MOVED_INTERVAL = 1.0
# A catch-up reads the changes from this long before the moment the loss was noticed: a dead
# connection may go unnoticed until its health check (15 s in app.py), and the hosts that stamp
# `updated_at` (workers, other API processes) may run a little ahead or behind. Reading a change
# twice is harmless: watchers skip what they have by `seq`.
CATCH_UP_MARGIN_SECONDS = 20.0


class Subscriber:
    """One watcher's bounded buffer of events: of one job, or of every job of one user."""

    def __init__(self, key: str, *, maxlen: int = SUBSCRIBER_BUFFER) -> None:
        self.key = key
        self.dropped = 0
        self._maxlen = maxlen
        self._buffer: deque[JobEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._moved = False

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

    def nudge(self) -> None:
        """The queue moved: `next_change` says so (once, however many moves came meanwhile)."""
        self._moved = True
        self._ready.set()

    async def next_change(self) -> JobEvent | QueueMoved | None:
        """The next event, else a `QueueMoved` if the queue moved since the last call; None once
        closed. (Iterating the subscriber instead yields the events alone.)"""
        while not self._buffer:
            if self._closed:
                return None
            if self._moved:
                self._moved = False
                return QueueMoved()
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

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

    def __init__(self) -> None:
        super().__init__("live updates unavailable")


Resync = Callable[[str], Awaitable[JobEvent | None]]
# A user's jobs changed at or after a moment, as events, oldest change first.
CatchUp = Callable[[str, datetime], Awaitable[list[JobEvent]]]


class JobEventHub:
    """Holds the process's ONE pub/sub connection and hands each event to the local watchers of
    its job and of its owner. After a reconnect, every watched job is re-read (`resync`) and every
    watching user caught up (`catch_up`), because events published while the connection was down
    are gone."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        resync: Resync | None = None,
        catch_up: CatchUp | None = None,
        buffer_size: int = SUBSCRIBER_BUFFER,
        catch_up_margin: float = CATCH_UP_MARGIN_SECONDS,
    ):
        self._client = client
        self._resync = resync
        self._catch_up = catch_up
        self._catch_up_margin = timedelta(seconds=catch_up_margin)
        self._buffer_size = buffer_size
        self._watchers: dict[str, set[Subscriber]] = {}  # by job id
        self._user_watchers: dict[str, set[Subscriber]] = {}  # by user id
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._moved_at = 0.0
        self._nudging: asyncio.TimerHandle | None = None

    @property
    def watcher_count(self) -> int:
        return sum(len(watchers) for group in (self._watchers, self._user_watchers) for watchers in group.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="job-event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        if self._nudging is not None:
            self._nudging.cancel()
            self._nudging = None
        for group in (self._watchers, self._user_watchers):
            for watchers in group.values():
                for watcher in watchers:
                    watcher.close()
        self.connected.clear()

    async def wait_connected(self, *, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self.connected.wait()
        except TimeoutError:
            raise EventStreamUnavailable() from None

    def watch(self, job_id: str) -> contextlib.AbstractAsyncContextManager[Subscriber]:
        """Register a watcher for `job_id`; events published from now on reach it."""
        return self._registered(self._watchers, job_id)

    def watch_user(self, user_id: str) -> contextlib.AbstractAsyncContextManager[Subscriber]:
        """Register a watcher for every job of `user_id`; events published from now on reach it.
        Events without an owner (from a worker of the previous version) reach no user watcher."""
        return self._registered(self._user_watchers, user_id)

    @contextlib.asynccontextmanager
    async def _registered(self, group: dict[str, set[Subscriber]], key: str) -> AsyncIterator[Subscriber]:
        watcher = Subscriber(key, maxlen=self._buffer_size)
        group.setdefault(key, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = group.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del group[key]

    def dispatch(self, raw: str | bytes) -> None:
        try:
            message = decode_message(raw)
        except (ValueError, TypeError, KeyError):
            log.warning("events.undecodable", extra={"raw": repr(raw[:200])})
            return
        if isinstance(message, QueueMoved):
            self._queue_moved()
        else:
            self._deliver(message)

    def _queue_moved(self) -> None:
        """Nudge every watcher now, or once the throttle interval since the last nudge is over."""
        if self._nudging is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._moved_at + QUEUE_MOVED_INTERVAL - loop.time())
        self._nudging = loop.call_later(delay, self._nudge_all)

    def _nudge_all(self) -> None:
        self._nudging = None
        self._moved_at = asyncio.get_running_loop().time()
        for group in (self._watchers, self._user_watchers):
            for watchers in group.values():
                for watcher in watchers:
                    watcher.nudge()

    def _deliver(self, event: JobEvent) -> None:
        for watcher in self._watchers.get(event.id, ()):
            watcher.offer(event)
        if event.user_id is not None:
            for watcher in self._user_watchers.get(event.user_id, ()):
                watcher.offer(event)

    async def _listen(self) -> None:
        delay = RECONNECT_MIN_DELAY
        lost_at: datetime | None = None  # when the stream was last lost (None: never connected yet)
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected.set()
                delay = RECONNECT_MIN_DELAY
                if lost_at is not None:
                    await self._resync_all(since=lost_at - self._catch_up_margin)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.dispatch(message["data"])
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("events.disconnected", extra={"error": repr(exc)})
                    lost_at = datetime.now(UTC)
                self.connected.clear()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _resync_all(self, *, since: datetime) -> None:
        """Subscribed again: deliver what was missed. The subscription is up before anything is
        read, so a change made meanwhile arrives live or in the read (or both: skipped by `seq`)."""
        if self._resync is not None:
            for job_id in list(self._watchers):
                try:
                    event = await self._resync(job_id)
                except Exception:  # a watcher keeps its stream; it only misses this catch-up
                    log.exception("events.resync_failed", extra={"job_id": job_id})
                    continue
                if event is not None:
                    self._deliver(event)
        if self._catch_up is not None:
            for user_id in list(self._user_watchers):
                try:
                    events = await self._catch_up(user_id, since)
                except Exception:  # as above: the user's watchers only miss this catch-up
                    log.exception("events.catch_up_failed", extra={"user": user_id})
                    continue
                for event in events:
                    for watcher in self._user_watchers.get(user_id, ()):
                        watcher.offer(event)
                log.info("events.caught_up", extra={"user": user_id, "jobs": len(events)})
