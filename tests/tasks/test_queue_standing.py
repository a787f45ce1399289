"""A job's place in the queue and its ETA, on the real Redis: positions are the order in which
workers take the jobs, and estimates come from measured starts and completions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from models.job import JobStatus
from tasks.estimates import Asked, Standing
from tasks.events import CHANNEL, QueueMoved, decode_message
from tasks.queue import JobQueue, create_huey
from tests.fixtures.proxy import free_port

WORKFLOW = "test-workflow"
# Long enough to be measured well above the ETA's 0.1 s rounding.
RUN_SECONDS = 0.3


@pytest.fixture
def queue(job_queue: JobQueue) -> Iterator[JobQueue]:
    job_queue.estimates.clear()
    yield job_queue
    job_queue.estimates.clear()


async def submit(queue: JobQueue, user: str, count: int = 1, *, megapixels: float = 1.0) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for job_id in ids:
        await queue.enqueue(uuid.UUID(job_id), user_id=user, megapixels=megapixels)
    return ids


def read(queue: JobQueue, ids: list[str], status: JobStatus = JobStatus.PENDING) -> dict[str, Standing]:
    return queue.estimates.read([Asked(id=job_id, status=status) for job_id in ids])


def start_next(queue: JobQueue) -> str:
    """What a worker does: take the next message (recording the start)."""
    task = queue.huey.dequeue()
    assert task is not None
    return str(task.args[0])


async def run_one(queue: JobQueue, *, seconds: float = RUN_SECONDS) -> str:
    """Start the next job, let it run `seconds`, complete it (a measurement)."""
    job_id = start_next(queue)
    await asyncio.sleep(seconds)  # the job's duration itself, not a wait for something to happen
    queue.estimates.finished(job_id, completed=True, workflow=WORKFLOW)
    return job_id


def user_tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_positions_of_a_backlog_are_the_order_jobs_are_started(queue: JobQueue) -> None:
    alice, bob, carol = (f"{name}-{user_tag()}" for name in ("alice", "bob", "carol"))
    ids = await submit(queue, alice, 4) + await submit(queue, bob, 3) + await submit(queue, carol, 2)

    positions = {job_id: standing.queue_position for job_id, standing in read(queue, ids).items()}
    started = [start_next(queue) for _ in ids]

    assert sorted(positions.values()) == list(range(1, len(ids) + 1))  # type: ignore[type-var]
    assert sorted(ids, key=lambda job_id: positions[job_id] or 0) == started
    assert started != ids  # fair turns, not arrival order: else this would prove little


async def test_a_started_job_has_no_position_and_the_jobs_behind_move_up(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 3)

    first = start_next(queue)
    after = read(queue, ids)

    assert first == ids[0]
    assert after[first].queue_position is None
    assert [after[job_id].queue_position for job_id in ids[1:]] == [1, 2]


async def test_a_processing_job_has_no_position(queue: JobQueue) -> None:
    [job_id] = await submit(queue, f"u-{user_tag()}")

    assert read(queue, [job_id], JobStatus.PROCESSING)[job_id].queue_position is None


async def test_a_withdrawn_job_leaves_the_queue_and_its_place(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 3)

    assert await queue.withdraw(ids[1]) is True
    positions = read(queue, ids)
    started = [start_next(queue) for _ in range(2)]

    assert [positions[job_id].queue_position for job_id in ids] == [1, None, 2]
    assert started == [ids[0], ids[2]]
    assert queue.huey.dequeue() is None
    assert await queue.withdraw(ids[0]) is False  # already started: nothing to withdraw


async def test_a_newcomer_is_placed_before_a_backlog(queue: JobQueue) -> None:
    backlog = await submit(queue, f"many-{user_tag()}", 5)
    start_next(queue)
    [newcomer] = await submit(queue, f"new-{user_tag()}")

    positions = read(queue, [*backlog[1:], newcomer])

    assert positions[newcomer].queue_position == 1  # next, before the rest of the backlog
    assert [positions[job_id].queue_position for job_id in backlog[1:]] == [2, 3, 4, 5]


async def test_the_eta_is_null_before_anything_was_measured(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 2)
    start_next(queue)

    pending, processing = read(queue, ids[1:]), read(queue, ids[:1], JobStatus.PROCESSING)

    assert pending[ids[1]] == Standing(queue_position=1, eta_seconds=None)
    assert processing[ids[0]] == Standing(queue_position=None, eta_seconds=None)


async def test_the_eta_of_a_pending_job_is_positive_and_grows_with_its_position(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 6)
    await run_one(queue)
    await run_one(queue)

    etas = [read(queue, ids[2:])[job_id].eta_seconds for job_id in ids[2:]]

    assert all(eta is not None and eta > 0 for eta in etas), etas
    assert etas == sorted(etas), etas  # type: ignore[type-var]
    assert etas[0] < etas[-1], etas  # type: ignore[operator]


async def test_the_eta_of_a_pending_job_moves_down_as_the_jobs_ahead_start(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 6)
    await run_one(queue)
    await run_one(queue)
    last = ids[-1]

    before = read(queue, [last])[last]
    await run_one(queue)  # the jobs ahead go at the pace measured so far
    await run_one(queue)
    after = read(queue, [last])[last]

    assert (before.queue_position, after.queue_position) == (4, 2)
    assert before.eta_seconds is not None
    assert after.eta_seconds is not None
    assert 0 < after.eta_seconds < before.eta_seconds


async def test_the_eta_of_a_processing_job_counts_down_and_never_goes_negative(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 3)
    await run_one(queue)
    running = start_next(queue)

    first = read(queue, [running], JobStatus.PROCESSING)[running].eta_seconds
    await asyncio.sleep(RUN_SECONDS * 2)  # run over the estimate
    overdue = read(queue, [running], JobStatus.PROCESSING)[running].eta_seconds
    halfway = queue.estimates.read([Asked(id=running, status=JobStatus.PROCESSING, progress=0.5)])[running]

    assert first is not None
    assert 0 < first <= RUN_SECONDS + 0.1
    assert overdue == 0.0
    assert halfway.eta_seconds is not None
    assert halfway.eta_seconds > 0
    assert ids[1] == running


async def test_a_failed_job_is_not_a_measurement(queue: JobQueue) -> None:
    ids = await submit(queue, f"u-{user_tag()}", 2)
    failed = start_next(queue)
    queue.estimates.finished(failed, completed=False, workflow=WORKFLOW)

    assert read(queue, ids[1:])[ids[1]].eta_seconds is None


async def test_a_size_class_never_measured_uses_the_workflows_estimate(queue: JobQueue) -> None:
    user = f"u-{user_tag()}"
    await submit(queue, user, 1, megapixels=1.0)
    await run_one(queue)
    [large] = await submit(queue, user, 1, megapixels=24.0)

    assert read(queue, [large])[large].eta_seconds is not None


async def test_each_start_broadcasts_that_the_queue_moved(queue: JobQueue, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    try:
        await submit(queue, f"u-{user_tag()}")
        start_next(queue)
        deadline = time.monotonic() + 5
        moved = False
        # Pub/sub spans Redis's databases: skip job events of other test runs on this server.
        while not moved and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)  # None for the subscription's confirmation
            moved = message is not None and isinstance(decode_message(message["data"]), QueueMoved)
        assert moved
    finally:
        pubsub.close()
        client.close()


async def test_with_redis_unreachable_standings_are_empty_not_an_error() -> None:
    queue = JobQueue(create_huey(f"redis://127.0.0.1:{free_port()}/0", blocking=False))

    assert await queue.standings([Asked(id=str(uuid.uuid4()), status=JobStatus.PENDING)]) == {}
