"""Job events: encoding, and the bounded per-watcher buffer that never drops a terminal event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gql.live import Subscriber
from tasks.events import JobEvent

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def event(seq: int, status: str = "processing", progress: float | None = 0.5) -> JobEvent:
    return JobEvent(
        id="job-1",
        seq=seq,
        status=status,
        denoise=0.5,
        original_key="originals/job-1.jpg",
        processed_key="restored/job-1.png" if status == "completed" else None,
        error_message=None,
        progress=progress,
        created_at=NOW,
        updated_at=NOW,
    )


def test_event_round_trips_through_its_wire_form() -> None:
    original = event(7)
    assert JobEvent.decode(original.encode()) == original


async def drain(subscriber: Subscriber) -> list[JobEvent]:
    subscriber.close()
    return [item async for item in subscriber]


async def test_a_slow_watcher_loses_intermediate_progress_but_never_the_terminal_event() -> None:
    subscriber = Subscriber("job-1", maxlen=4)
    subscriber.offer(event(1, progress=0.0))
    for seq in range(2, 100):
        subscriber.offer(event(seq, progress=seq / 100))
    subscriber.offer(event(100, status="completed", progress=None))
    received = await drain(subscriber)
    assert len(received) <= 5
    assert received[-1].status == "completed"
    assert received[0].seq == 1  # the status change into processing is not a droppable progress event
    assert [item.seq for item in received] == sorted(item.seq for item in received)
    assert subscriber.dropped >= 94


async def test_a_waiting_watcher_wakes_up_for_an_event() -> None:
    subscriber = Subscriber("job-1")
    waiter = asyncio.create_task(anext(subscriber))
    await asyncio.sleep(0)
    subscriber.offer(event(3))
    assert (await waiter).seq == 3
