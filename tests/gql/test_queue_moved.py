"""The hub's side of "queue moved": every watcher is nudged, at most once per interval, and the
nudge never displaces a job's own events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from gql.live import QUEUE_MOVED_INTERVAL, JobEventHub
from tasks.events import JobEvent, QueueMoved, decode_message

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WAIT = 10.0


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[JobEventHub]:
    """A hub (not listening) whose messages the test hands it (`dispatch`), as its pub/sub loop would."""
    client = aioredis.Redis.from_url(redis_url)
    hub = JobEventHub(client)
    yield hub
    await hub.close()
    await client.aclose()


def pending_event(seq: int) -> JobEvent:
    return JobEvent(
        id="job-1",
        seq=seq,
        status="pending",
        denoise=0.5,
        original_key="originals/job-1.jpg",
        processed_key=None,
        error_message=None,
        progress=None,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_channel_tells_a_queue_move_from_a_job_event() -> None:
    assert isinstance(decode_message(QueueMoved().encode()), QueueMoved)
    assert decode_message(pending_event(3).encode()) == pending_event(3)


async def test_every_watcher_is_nudged_once_for_a_burst_of_moves(hub: JobEventHub) -> None:
    async with hub.watch("job-1") as one, hub.watch_user("someone") as everyone:
        for _ in range(5):
            hub.dispatch(QueueMoved().encode())
        changes = [await asyncio.wait_for(feed.next_change(), WAIT) for feed in (one, everyone)]
        hub.dispatch(pending_event(2).encode())  # the next change is the job's event, not a 2nd nudge
        after = await asyncio.wait_for(one.next_change(), WAIT)

    assert all(isinstance(change, QueueMoved) for change in changes)
    assert after == pending_event(2)


async def test_moves_nudge_a_watcher_at_most_once_per_interval(hub: JobEventHub) -> None:
    loop = asyncio.get_running_loop()
    async with hub.watch("job-1") as feed:
        hub.dispatch(QueueMoved().encode())
        assert isinstance(await asyncio.wait_for(feed.next_change(), WAIT), QueueMoved)
        first = loop.time()
        hub.dispatch(QueueMoved().encode())
        assert isinstance(await asyncio.wait_for(feed.next_change(), WAIT), QueueMoved)
        second = loop.time()

    assert second - first >= QUEUE_MOVED_INTERVAL * 0.9
