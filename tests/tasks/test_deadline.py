"""The pending deadline: a job no worker could start within JOB_TIMEOUT_SECONDS fails COMFYUI_UNAVAILABLE."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from models import repository
from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from tasks.deadline import fail_overdue_pending
from tasks.estimates import Asked
from tasks.queue import JobQueue
from tests.fixtures.services import ApiServer

SERVERS = ["http://gpu1.internal:8188", "http://gpu2.internal:8188"]


async def job_submitted(seconds_ago: float, *, status: JobStatus = JobStatus.PENDING) -> RestorationJob:
    job_id = uuid.uuid4()
    await repository.create_job(
        job_id=job_id, user_id="deadline-user", denoise=0.5, original_key=f"originals/{job_id}.jpg"
    )
    created = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    await RestorationJob.filter(id=job_id).update(created_at=created, status=status)
    return await RestorationJob.get(id=job_id)


async def test_a_job_pending_past_the_timeout_fails_unavailable_and_retryable(api: ApiServer) -> None:
    job = await job_submitted(400)
    changed: list[RestorationJob] = []

    async def record(row: RestorationJob) -> None:
        changed.append(row)

    await fail_overdue_pending(timeout_seconds=300, servers=SERVERS, on_change=record)

    row = await RestorationJob.get(id=job.id)
    assert (row.status, row.error_code, row.retryable) == (JobStatus.FAILED, ErrorCode.COMFYUI_UNAVAILABLE, True)
    assert row.error_message is not None
    assert "2 servers tried" in row.error_message
    assert "gpu1" not in row.error_message
    assert [entry.id for entry in changed] == [job.id]


async def test_a_job_pending_within_the_timeout_is_left_alone(api: ApiServer) -> None:
    job = await job_submitted(10)
    await fail_overdue_pending(timeout_seconds=300, servers=SERVERS)
    assert (await RestorationJob.get(id=job.id)).status == JobStatus.PENDING


async def test_a_job_already_started_is_its_workers_to_settle(api: ApiServer) -> None:
    job = await job_submitted(400, status=JobStatus.PROCESSING)
    await fail_overdue_pending(timeout_seconds=300, servers=SERVERS)
    assert (await RestorationJob.get(id=job.id)).status == JobStatus.PROCESSING


async def test_two_sweepers_fail_a_job_once(api: ApiServer) -> None:
    job = await job_submitted(400)
    first = await fail_overdue_pending(timeout_seconds=300, servers=SERVERS)
    second = await fail_overdue_pending(timeout_seconds=300, servers=SERVERS)
    assert first >= 1
    assert second == 0
    assert (await RestorationJob.get(id=job.id)).seq == 1


async def test_a_job_failed_by_the_deadline_leaves_the_queue_and_the_job_behind_it_moves_up(
    api: ApiServer, job_queue: JobQueue
) -> None:
    overdue, behind = await job_submitted(400), await job_submitted(10)
    for job in (overdue, behind):
        await job_queue.enqueue(job.id, user_id=job.user_id)
    assert (await job_queue.standings([Asked(id=str(behind.id), status=JobStatus.PENDING)]))[
        str(behind.id)
    ].queue_position == 2

    await fail_overdue_pending(timeout_seconds=300, servers=SERVERS, queue=job_queue)

    assert await job_queue.queued_ids() == {str(behind.id)}
    standing = await job_queue.standings([Asked(id=str(behind.id), status=JobStatus.PENDING)])
    assert standing[str(behind.id)].queue_position == 1
