"""A worker process killed (SIGKILL) mid-job: another worker's reconciler settles the job from
ComfyUI's own record once the dead worker's lease runs out — completed if ComfyUI finished the
prompt, failed ("worker lost") if ComfyUI no longer knows it. Nothing stays `processing`."""

from __future__ import annotations

import asyncio
import time

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.harness import Cluster, Process, Rows, comfy_running, submit, wait_for_status, wait_terminal

LEASE = 3.0  # WORKER_LEASE_SECONDS of the cluster
INTERVAL = 0.5  # RECONCILE_INTERVAL_SECONDS of the cluster
SERVICE_TIME = 2.0


async def two_workers_and_a_job_running_in_comfyui(
    cluster: Cluster, comfy: ComfyEmulatorHandle, rows: Rows, client, *, service_time: float = SERVICE_TIME
) -> tuple[str, Process, Process]:
    """Start the API and two workers, submit a job; the job id, its worker, the other worker."""
    await comfy.set_faults(service_time=service_time)
    workers = await asyncio.gather(cluster.start_worker(), cluster.start_worker())
    job_id = await submit(client)
    await wait_for_status(client, job_id, ("processing",), within=10)
    await comfy_running(comfy, job_id)
    holder_id = (await rows.job(job_id))["worker_id"]
    [holder] = [worker for worker in workers if worker.worker_id == holder_id]
    [survivor] = [worker for worker in workers if worker is not holder]
    return job_id, holder, survivor


async def test_killed_workers_job_is_completed_from_comfyuis_history_by_another_worker(
    cluster: Cluster,
    comfy: ComfyEmulatorHandle,
    rows: Rows,
    s3_server: S3ServerHandle,
    client_factory,
    record_property,
) -> None:
    await cluster.start_api()
    client = client_factory(cluster.api_url)
    job_id, holder, survivor = await two_workers_and_a_job_running_in_comfyui(cluster, comfy, rows, client)

    holder.kill()
    killed = time.monotonic()

    # The lease runs out, then the survivor settles the job; if it looks while ComfyUI is still
    # running the prompt it leaves it alone for one more lease.
    bound = 2 * LEASE + INTERVAL + SERVICE_TIME + 5
    job, seconds = await wait_terminal(client, job_id, within=bound, since=killed)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "completed", (job, cluster.logs())
    assert seconds < bound
    assert (await rows.job(job_id))["worker_id"] == survivor.worker_id
    assert (await comfy.wait_for_history(job_id))["status"]["status_str"] == "success"
    assert s3_server.keys() == [f"originals/{job_id}.jpg", f"restored/{job_id}.png"]

    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())


async def test_killed_workers_job_fails_as_worker_lost_when_comfyui_restarted_meanwhile(
    cluster: Cluster,
    comfy: ComfyEmulatorHandle,
    rows: Rows,
    s3_server: S3ServerHandle,
    client_factory,
    record_property,
) -> None:
    await cluster.start_api()
    client = client_factory(cluster.api_url)
    job_id, holder, _ = await two_workers_and_a_job_running_in_comfyui(cluster, comfy, rows, client)

    holder.kill()
    killed = time.monotonic()
    comfy.kill()
    comfy.start()  # same port; its queue and history are gone

    bound = LEASE + INTERVAL + 5
    job, seconds = await wait_terminal(client, job_id, within=bound, since=killed)
    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "failed", (job, cluster.logs())
    assert (job["error_code"], job["retryable"]) == ("JOB_LOST", True), job
    assert job["error_message"].startswith("worker lost"), job
    assert seconds < bound
    assert s3_server.keys("originals/") == [f"originals/{job_id}.jpg"]
    assert s3_server.keys("restored/") == []

    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())


async def test_a_job_cancelled_after_its_worker_was_killed_has_its_prompt_withdrawn_by_another_worker(
    cluster: Cluster,
    comfy: ComfyEmulatorHandle,
    rows: Rows,
    s3_server: S3ServerHandle,
    client_factory,
    record_property,
) -> None:
    await cluster.start_api()
    client = client_factory(cluster.api_url)
    long_run = 60.0  # the prompt would hold the GPU this long if nobody withdrew it
    job_id, holder, survivor = await two_workers_and_a_job_running_in_comfyui(
        cluster, comfy, rows, client, service_time=long_run
    )

    holder.kill()
    response = await client.post(f"/api/v1/restoration/jobs/{job_id}/cancel")
    cancelled = time.monotonic()
    assert response.json()["status"] == "cancelled", response.text

    # Nobody is left to notice the cancel but the survivor's reconciler, once the lease runs out.
    bound = LEASE + 2 * INTERVAL + 5
    entry = await comfy.wait_for_history(job_id, wait_s=bound)
    seconds = time.monotonic() - cancelled
    record_property("seconds_to_withdrawn", round(seconds, 2))
    assert seconds < bound < long_run
    assert [kind for kind, _ in entry["status"]["messages"]][-1] == "execution_interrupted", entry
    assert (await rows.job(job_id))["status"] == "cancelled"
    assert (await rows.job(job_id))["worker_id"] == survivor.worker_id
    assert s3_server.keys("restored/") == []

    await comfy.set_faults(service_time=SERVICE_TIME)
    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())
