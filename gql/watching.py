"""Watching jobs, behind the `jobUpdated` and `jobsUpdated` subscriptions: one job until it ends,
or every job of the caller; and what the API's event hub reads to catch watchers up after its
event stream reconnects."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime

from gql.context import Services
from gql.errors import NotFound
from gql.jobs import parse_job_id
from gql.views import JobView, placed, view_of
from models import repository
from models.job import JobStatus
from tasks.events import JobEvent, QueueMoved


async def _placed(services: Services, view: JobView) -> JobView:
    """The view with its queue position and ETA (nulls when Redis cannot be read)."""
    [view] = await placed([view], services.queue)
    return view


# How many finished jobs a `jobsUpdated` watcher remembers, to drop their late stale events: far
# more than end in the moment such an event can lag behind (milliseconds).
FINISHED_REMEMBERED = 1024
# How long a new watcher waits for the API's event subscription to be up before giving up.
EVENTS_CONNECT_WAIT = 5.0


async def watch_job(*, services: Services, user_id: str, job_id: str) -> AsyncIterator[JobView]:
    """The job's current state, then every change, ending after a terminal state.

    Registers for events FIRST and reads the row SECOND, so nothing published in between is
    lost; events not newer than what was already sent (by `seq`) are skipped. While the job is
    pending, its new position is sent when the queue moves (throttled by the hub).
    """
    parsed = parse_job_id(job_id)
    if parsed is None:
        raise NotFound("job not found")
    await services.events.wait_connected(within=EVENTS_CONNECT_WAIT)
    async with services.events.watch(str(parsed)) as feed:
        job = await repository.get_user_job(parsed, user_id)
        if job is None:
            raise NotFound("job not found")
        current = await _placed(services, view_of(job, services.urls))
        yield current
        if JobStatus(job.status).terminal:
            return
        seen = job.seq
        while (change := await feed.next_change()) is not None:
            if isinstance(change, QueueMoved):
                if current.status is JobStatus.PENDING and (moved := await _moved(services, [current])):
                    [current] = moved
                    yield current
                continue
            event = change
            if event.seq <= seen:
                continue
            seen = event.seq
            view = services.views.get((event.id, event.seq), functools.partial(view_of, event, services.urls))
            current = await _placed(services, view)
            yield current
            if event.terminal:
                return


async def _moved(services: Services, views: list[JobView]) -> list[JobView]:
    """Those of the views whose position or ETA changed, re-read (one round trip). A job that
    lost its place is being started (or withdrawn): its own event follows, so it is left out."""
    again = await placed(views, services.queue)
    return [
        new
        for old, new in zip(views, again, strict=True)
        if new.queue_position is not None
        and (new.queue_position, new.eta_seconds) != (old.queue_position, old.eta_seconds)
    ]


# Jobs whose last `seq` a `jobsUpdated` stream remembers, to skip what it already sent (a
# catch-up after a reconnect re-reads recent changes): far more than one person has in flight.
SEEN_JOBS_PER_WATCHER = 1024
# The most jobs one user is caught up on after the event stream reconnects (the latest changes).
CATCH_UP_MAX_JOBS = 500


async def watch_user_jobs(*, services: Services, user_id: str) -> AsyncIterator[JobView]:
    """Every change of any of the caller's jobs from now on, never another user's; never ends by
    itself. Changes of one job arrive in order; a stale or repeated event (by `seq`) is skipped,
    so the hub's catch-up after a reconnect sends each missed change once. The pending jobs seen
    so far are sent again when the queue moves and their position changed."""
    await services.events.wait_connected(within=EVENTS_CONNECT_WAIT)
    async with services.events.watch_user(user_id) as feed:
        seen: OrderedDict[str, int] = OrderedDict()  # job id → last seq sent, least recent first
        # Jobs seen finishing, the most recent ones: an event of theirs that was published before
        # the end but arrives after it (a worker's last progress racing the API's cancel, each on
        # its own connection) is stale.
        finished: OrderedDict[str, None] = OrderedDict()
        pending: dict[str, JobView] = {}  # the last view sent of each pending job
        while (change := await feed.next_change()) is not None:
            if isinstance(change, QueueMoved):
                for view in await _moved(services, list(pending.values())) if pending else []:
                    pending[str(view.id)] = view
                    yield view
                continue
            event = change
            if event.user_id != user_id or event.seq <= seen.get(event.id, -1) or event.id in finished:
                continue
            seen[event.id] = event.seq
            seen.move_to_end(event.id)
            if len(seen) > SEEN_JOBS_PER_WATCHER:
                seen.popitem(last=False)
            if event.terminal:
                finished[event.id] = None
                if len(finished) > FINISHED_REMEMBERED:
                    finished.popitem(last=False)
            view = services.views.get((event.id, event.seq), functools.partial(view_of, event, services.urls))
            view = await _placed(services, view)
            if view.status is JobStatus.PENDING:
                pending[event.id] = view
            else:
                pending.pop(event.id, None)
            yield view


async def current_event(job_id: str) -> JobEvent | None:
    """The row as an event, for catching watchers up after the event stream reconnects."""
    job = await repository.get_job(job_id)
    return JobEvent.of(job) if job is not None else None


async def user_events_since(user_id: str, since: datetime) -> list[JobEvent]:
    """Each of the user's jobs changed at or after `since`, as its current state, oldest change
    first: what `jobsUpdated` watchers missed while the event stream was down."""
    jobs = await repository.user_jobs_changed_since(user_id, since, limit=CATCH_UP_MAX_JOBS)
    return [JobEvent.of(job) for job in jobs]
