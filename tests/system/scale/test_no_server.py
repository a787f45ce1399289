"""No black hole: with no ComfyUI server reachable, a job waits `pending` (no worker takes it) and
fails COMFYUI_UNAVAILABLE once JOB_TIMEOUT_SECONDS have passed since it was submitted, whether
workers are running or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from tests.system.faults.harness import Cluster, read_job, submit
from tests.system.scale.helpers import dead_server, servers

JOB_TIMEOUT = 8
RECONCILE_INTERVAL = 1
# A sweep runs every RECONCILE_INTERVAL; the rest is for process scheduling on a busy machine.
MARGIN = RECONCILE_INTERVAL + 3
DEADLINES = {"JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT), "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_INTERVAL)}


async def submit_and_follow(client: httpx.AsyncClient) -> tuple[dict[str, Any], float, set[str]]:
    """Submit a job and poll it until it ends: the job, the seconds from submission, and every
    status it was seen in before."""
    submitted = time.monotonic()
    job_id = await submit(client)
    statuses: set[str] = set()
    while (job := await read_job(client, job_id))["status"] not in ("completed", "failed"):
        statuses.add(job["status"])
        assert time.monotonic() - submitted < JOB_TIMEOUT + MARGIN, job
        await asyncio.sleep(0.1)
    return job, time.monotonic() - submitted, statuses


def assert_failed_for_want_of_a_server(ended: Sequence[tuple[dict[str, Any], float, set[str]]]) -> None:
    for job, seconds, statuses in ended:
        assert job["status"] == "failed", job
        assert (job["error_code"], job["retryable"]) == ("COMFYUI_UNAVAILABLE", True), job
        assert "2 servers tried" in job["error_message"], job
        assert statuses <= {"pending"}, statuses  # never taken off the queue
        assert JOB_TIMEOUT - 0.5 <= seconds <= JOB_TIMEOUT + MARGIN, seconds


async def test_with_every_server_down_each_job_fails_unavailable_at_its_deadline(
    cluster: Cluster, user_client, record_property
) -> None:
    listed = servers(dead_server(), dead_server())
    cluster.env |= DEADLINES
    await asyncio.gather(cluster.start_api(COMFYUI_URL=listed), cluster.start_worker(COMFYUI_URL=listed))
    client = user_client(cluster.api_url)

    async def staggered(delay: float) -> tuple[dict[str, Any], float, set[str]]:
        await asyncio.sleep(delay)
        return await submit_and_follow(client)

    # Submitted at different moments: each fails at its own deadline, not all at one sweep.
    ended = await asyncio.gather(*(staggered(delay) for delay in (0, 1, 2)))

    record_property("seconds_to_failed", [round(seconds, 2) for _, seconds, _ in ended])
    assert_failed_for_want_of_a_server(ended)


async def test_with_no_worker_at_all_the_api_fails_each_job_unavailable_at_its_deadline(
    cluster: Cluster, user_client, record_property
) -> None:
    cluster.env |= DEADLINES
    await cluster.start_api(COMFYUI_URL=servers(dead_server(), dead_server()))
    client = user_client(cluster.api_url)

    ended = await asyncio.gather(submit_and_follow(client), submit_and_follow(client))

    record_property("seconds_to_failed", [round(seconds, 2) for _, seconds, _ in ended])
    assert_failed_for_want_of_a_server(ended)
