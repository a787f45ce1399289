"""S3 goes away: at submit the request is refused with 503 and nothing is recorded or queued;
during a job's result upload the job fails with a storage message and the original is kept."""

from __future__ import annotations

import time

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.harness import (
    Cluster,
    Rows,
    comfy_running,
    post_photo,
    queue_of,
    submit,
    wait_for_status,
    wait_terminal,
)

SERVICE_TIME = 1.5


async def test_submit_while_storage_is_down_is_503_and_records_nothing(
    cluster: Cluster, rows: Rows, s3_server: S3ServerHandle, client_factory
) -> None:
    await cluster.start_api()
    client = client_factory(cluster.api_url)

    s3_server.stop()
    try:
        refused = await post_photo(client)
    finally:
        s3_server.start()

    assert refused.status_code == 503, refused.text
    assert refused.json()["detail"] == "storage unavailable, please retry shortly"
    assert int(refused.headers["retry-after"]) > 0
    assert await rows.count() == 0
    assert queue_of(cluster.env["REDIS_URL"]).pending_count() == 0
    assert s3_server.keys() == []

    await cluster.start_worker()
    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())


async def test_storage_lost_during_the_result_upload_fails_the_job_and_keeps_the_original(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client_factory, record_property
) -> None:
    await comfy.set_faults(service_time=SERVICE_TIME)
    await cluster.start_api()
    await cluster.start_worker()
    client = client_factory(cluster.api_url)
    job_id = await submit(client)
    await wait_for_status(client, job_id, ("processing",), within=10)
    await comfy_running(comfy, job_id)  # the original was read; the result is yet to be stored

    s3_server.stop()
    stopped = time.monotonic()
    try:
        bound = SERVICE_TIME + 10
        job, seconds = await wait_terminal(client, job_id, within=bound, since=stopped)
    finally:
        s3_server.start()

    record_property("seconds_to_terminal", round(seconds, 2))
    assert job["status"] == "failed", (job, cluster.logs())
    assert (job["error_code"], job["retryable"]) == ("STORAGE_ERROR", True), job
    assert s3_server.bucket not in job["error_message"], job
    assert seconds < bound
    assert s3_server.keys() == [f"originals/{job_id}.jpg"]

    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())
