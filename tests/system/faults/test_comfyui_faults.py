"""ComfyUI misbehaving under a real worker process (default socket/poll/outage settings): every job
still ends, with a reason its owner can read, in seconds rather than at JOB_TIMEOUT_SECONDS."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfy.client import OUTAGE_GRACE_SECONDS as OUTAGE_GRACE
from comfy.client import POLL_INTERVAL
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.harness import Cluster, comfy_running, read_job, submit, wait_terminal

# comfy/client.py: history is polled after POLL_INTERVAL s of socket silence, and an unreachable
# server is waited for OUTAGE_GRACE s before the job fails.


@pytest.fixture
async def client(cluster: Cluster, client_factory):
    await cluster.start_api()
    await cluster.start_worker()
    return client_factory(cluster.api_url)


async def fresh_job_completes(client, cluster: Cluster) -> None:
    job, _ = await wait_terminal(client, await submit(client), within=20)
    assert job["status"] == "completed", (job, cluster.logs())


async def test_silent_socket_job_completes_from_the_history(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client, record_property
) -> None:
    await comfy.set_faults(mode="silent_socket")

    job_id = await submit(client)

    bound = POLL_INTERVAL + 5
    job, seconds = await wait_terminal(client, job_id, within=bound)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "completed", (job, cluster.logs())
    assert seconds < bound
    assert s3_server.keys() == [f"originals/{job_id}.jpg", f"restored/{job_id}.png"]
    await fresh_job_completes(client, cluster)


async def test_comfyui_dying_mid_run_and_staying_down_fails_the_job_as_unavailable(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client, record_property
) -> None:
    await comfy.set_faults(mode="die", node="31")

    job_id = await submit(client)
    while comfy.alive:  # noqa: ASYNC110 - the double kills itself when the sampler starts; no event to await
        await asyncio.sleep(0.02)
    died = time.monotonic()

    bound = OUTAGE_GRACE + 5
    job, seconds = await wait_terminal(client, job_id, within=bound, since=died)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "failed", (job, cluster.logs())
    assert (job["error_code"], job["retryable"]) == ("COMFYUI_UNAVAILABLE", True), job
    assert OUTAGE_GRACE - 1 < seconds < bound  # it rode out the grace period, then gave up
    assert s3_server.keys() == [f"originals/{job_id}.jpg"]

    comfy.start()
    await fresh_job_completes(client, cluster)


async def test_comfyui_restarted_mid_run_fails_the_job_as_lost_within_seconds(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client, record_property
) -> None:
    await comfy.set_faults(service_time=3.0)
    job_id = await submit(client)
    await comfy_running(comfy, job_id)

    comfy.kill()
    killed = time.monotonic()
    comfy.start()  # same port, empty queue and history

    bound = 8.0  # seconds, not the job timeout
    job, seconds = await wait_terminal(client, job_id, within=bound, since=killed)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "failed", (job, cluster.logs())
    assert (job["error_code"], job["retryable"]) == ("JOB_LOST", True), job
    assert job["error_message"] == "ComfyUI restarted; the job was lost", job
    assert seconds < bound
    assert s3_server.keys() == [f"originals/{job_id}.jpg"]
    await fresh_job_completes(client, cluster)


async def test_comfyui_refusing_connections_leaves_the_job_pending_then_fails_it_unavailable_at_the_deadline(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client_factory, record_property
) -> None:
    timeout = 6.0
    settings = {"JOB_TIMEOUT_SECONDS": str(int(timeout))}
    await cluster.start_api(**settings)
    await cluster.start_worker(**settings)
    client = client_factory(cluster.api_url)
    comfy.kill()

    submitted = time.monotonic()
    job_id = await submit(client)

    # No reachable server: the worker takes nothing off the queue, so the job waits as pending
    # (nothing happens for a while: there is no event to await)...
    await asyncio.sleep(timeout / 2)
    assert (await read_job(client, job_id))["status"] == "pending"
    # ...until it has waited JOB_TIMEOUT_SECONDS since its submission.
    bound = timeout + 3.0
    job, seconds = await wait_terminal(client, job_id, within=bound, since=submitted)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "failed", (job, cluster.logs())
    assert (job["error_code"], job["retryable"]) == ("COMFYUI_UNAVAILABLE", True), job
    assert comfy.url.removeprefix("http://") not in job["error_message"], job
    assert timeout - 1.0 <= seconds < bound
    assert s3_server.keys() == [f"originals/{job_id}.jpg"]

    comfy.start()
    await fresh_job_completes(client, cluster)
