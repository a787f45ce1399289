"""Redis (the queue) goes away with jobs waiting in it and comes back EMPTY: while it is down a
submit is refused with 503 and leaves nothing behind, reads still come from PostgreSQL; once it
is back the reconciler queues the lost jobs again and they complete."""

from __future__ import annotations

import time

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.harness import (
    Cluster,
    RedisServer,
    Rows,
    comfy_running,
    post_photo,
    queue_of,
    read_job,
    submit,
    wait_for_status,
    wait_terminal,
)

SERVICE_TIME = 1.5
REQUEUE_AFTER = 1.0
INTERVAL = 0.5  # RECONCILE_INTERVAL_SECONDS of the cluster


async def test_jobs_lost_with_an_emptied_redis_are_queued_again_and_complete(
    cluster: Cluster,
    private_redis: RedisServer,
    comfy: ComfyEmulatorHandle,
    rows: Rows,
    s3_server: S3ServerHandle,
    client_factory,
    record_property,
) -> None:
    settings = {"REDIS_URL": private_redis.url, "REQUEUE_AFTER_SECONDS": str(REQUEUE_AFTER)}
    await comfy.set_faults(service_time=SERVICE_TIME)
    await cluster.start_api(**settings)
    worker = await cluster.start_worker(concurrency=1, **settings)
    client = client_factory(cluster.api_url)
    running, *waiting = [await submit(client) for _ in range(3)]
    await wait_for_status(client, running, ("processing",), within=10)
    await comfy_running(comfy, running)
    assert queue_of(private_redis.url).pending_count() == len(waiting)

    private_redis.stop()

    jobs_before, objects_before = await rows.count(), s3_server.keys()
    refused = await post_photo(client)
    assert refused.status_code == 503, refused.text
    assert refused.json()["detail"] == "job queue unavailable, please retry shortly"
    assert int(refused.headers["retry-after"]) > 0
    assert await rows.count() == jobs_before
    assert s3_server.keys() == objects_before
    assert (await read_job(client, waiting[0]))["status"] == "pending"

    private_redis.start()
    back = time.monotonic()
    assert private_redis.dbsize() == 0  # the waiting jobs' messages are gone

    # Requeued within REQUEUE_AFTER + a reconcile round, then run one after the other.
    bound = REQUEUE_AFTER + INTERVAL + len(waiting) * SERVICE_TIME + 8
    timings = []
    for job_id in (running, *waiting):
        job, seconds = await wait_terminal(client, job_id, within=bound, since=back)
        assert job["status"] == "completed", (job, cluster.logs())
        assert seconds < bound
        timings.append(round(seconds, 2))
    record_property("seconds_to_terminal", timings)
    assert all(f"reconcile.requeue job_id={job_id}" in worker.log() for job_id in waiting)
    assert s3_server.keys("originals/") == sorted(f"originals/{job_id}.jpg" for job_id in (running, *waiting))

    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())
