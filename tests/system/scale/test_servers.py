"""Several ComfyUI servers behind real workers: jobs spread over all of them, never more than
COMFYUI_MAX_INFLIGHT of ours in any one, and a dead or dying server costs only the jobs that were
already running on it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from tests.fixtures.proxy import free_port
from tests.system.faults.harness import Cluster, Rows, comfy_running, dump, submit, wait_terminal
from tests.system.scale.helpers import (
    Emulators,
    all_terminal,
    dead_server,
    most_at_once,
    prompt_ids,
    prompts_seen,
    receiver_of,
    servers,
    servers_of,
    submit_many,
    wait_server_up,
)

MAX_INFLIGHT = 2


async def test_jobs_spread_over_every_server_and_never_overfill_one(
    cluster: Cluster, emulators: Emulators, user_client
) -> None:
    comfies = await emulators.start(3)
    every_server = servers(*comfies)
    # Three threads each: neither worker can fill the six slots alone, so both send prompts.
    await asyncio.gather(
        cluster.start_api(COMFYUI_URL=every_server),
        *(
            cluster.start_worker(concurrency=3, COMFYUI_URL=every_server, COMFYUI_MAX_INFLIGHT=str(MAX_INFLIGHT))
            for _ in range(2)
        ),
    )
    client = user_client(cluster.api_url)

    job_ids = await submit_many(client, 12)
    jobs = await all_terminal(client, job_ids, within=30)

    assert [job["status"] for job in jobs] == ["completed"] * 12, (dump(jobs), cluster.logs())
    seen = {comfy.url: await prompts_seen(comfy) for comfy in comfies}
    assert sorted(p.prompt_id for prompts in seen.values() for p in prompts) == sorted(job_ids)
    assert all(seen.values()), {url: len(prompts) for url, prompts in seen.items()}
    peaks = {url: most_at_once(prompts) for url, prompts in seen.items()}
    assert max(peaks.values()) <= MAX_INFLIGHT, peaks
    # Both workers sent prompts: the limit held across workers, not just within one.
    senders = {p["client_id"].rsplit("-", 1)[0] for comfy in comfies for p in (await comfy.state())["prompts"]}
    assert len(senders) == 2, senders


async def test_a_server_dead_from_the_start_costs_no_job(
    cluster: Cluster, emulators: Emulators, rows: Rows, user_client
) -> None:
    comfies = await emulators.start(2, service_time=0.1)
    dead = dead_server()
    listed = servers(comfies[0], dead, comfies[1])
    await asyncio.gather(cluster.start_api(COMFYUI_URL=listed), cluster.start_worker(COMFYUI_URL=listed))
    client = user_client(cluster.api_url)

    job_ids = await submit_many(client, 6)
    jobs = await all_terminal(client, job_ids, within=30)

    assert [job["status"] for job in jobs] == ["completed"] * 6, (dump(jobs), cluster.logs())
    ran_on = await servers_of(rows, job_ids)
    assert set(ran_on.values()) <= {comfies[0].url, comfies[1].url}, ran_on
    assert sorted(await prompt_ids(comfies[0]) + await prompt_ids(comfies[1])) == sorted(job_ids)


async def test_a_server_killed_mid_run_fails_only_its_jobs_and_is_used_again_once_back(
    cluster: Cluster, emulators: Emulators, rows: Rows, user_client, record_property
) -> None:
    comfies = await emulators.start(2)
    listed = servers(*comfies)
    metrics_port = free_port()
    await asyncio.gather(
        cluster.start_api(COMFYUI_URL=listed, JOB_TIMEOUT_SECONDS="20"),
        cluster.start_worker(COMFYUI_URL=listed, JOB_TIMEOUT_SECONDS="20", WORKER_METRICS_PORT=str(metrics_port)),
    )
    client = user_client(cluster.api_url)
    await wait_server_up(metrics_port, {comfies[0].url: 1.0, comfies[1].url: 1.0}, within=15)

    # Whichever server gets the first job is the one that dies: its first prompt runs for 30 s.
    for comfy in comfies:
        await comfy.set_faults(service_time=30.0, times=1)
    doomed_jobs = [await submit(client)]
    doomed = await receiver_of(doomed_jobs[0], comfies)
    [survivor] = [comfy for comfy in comfies if comfy is not doomed]
    await survivor.set_faults()  # normal again before any job reaches it
    # A second job waiting in the doomed server's queue. A job goes to the slot of whichever idle
    # consumer thread takes it, so submit until one lands there (the others complete on the survivor).
    elsewhere: list[str] = []
    while len(doomed_jobs) < MAX_INFLIGHT:
        assert len(elsewhere) < 10, ("no second job reached the doomed server", cluster.logs())
        job_id = await submit(client)
        (doomed_jobs if await receiver_of(job_id, comfies) is doomed else elsewhere).append(job_id)
    await comfy_running(doomed, doomed_jobs[0])
    doomed.kill()
    killed = time.monotonic()

    later = await submit_many(client, 3)
    done = await all_terminal(client, elsewhere + later, within=20)
    assert [job["status"] for job in done] == ["completed"] * len(done), (dump(done), cluster.logs())
    ran_on = await servers_of(rows, elsewhere + later)
    assert set(ran_on.values()) == {survivor.url}, (ran_on, cluster.logs())

    for job_id in doomed_jobs:
        job, seconds = await wait_terminal(client, job_id, within=25, since=killed)
        record_property(f"seconds_kill_to_failed_{job_id}", round(seconds, 2))
        assert job["status"] == "failed", (job, cluster.logs())
        assert job["error_code"] in ("COMFYUI_UNAVAILABLE", "JOB_LOST"), (job, cluster.logs())
        assert seconds <= 20 + 1, (seconds, cluster.logs())  # JOB_TIMEOUT_SECONDS, plus a reconcile round

    doomed.start()  # same port; a fresh process with an empty queue
    await wait_server_up(metrics_port, {doomed.url: 1.0, survivor.url: 1.0}, within=15)
    again = await submit_many(client, 4)
    again_jobs = await all_terminal(client, again, within=20)
    assert [job["status"] for job in again_jobs] == ["completed"] * 4, (dump(again_jobs), cluster.logs())
    back_on = Counter((await servers_of(rows, again)).values())
    assert back_on[doomed.url] >= 1, (back_on, cluster.logs())
    assert set(await prompt_ids(doomed)) <= set(again)


async def test_a_worker_whose_only_server_is_down_leaves_every_job_to_a_healthy_worker(
    cluster: Cluster, emulators: Emulators, rows: Rows, user_client
) -> None:
    [comfy] = await emulators.start(1, service_time=0.1)
    dead = dead_server()
    _, stranded, healthy = await asyncio.gather(
        cluster.start_api(COMFYUI_URL=servers(comfy, dead)),
        cluster.start_worker(COMFYUI_URL=dead),
        cluster.start_worker(COMFYUI_URL=comfy.url),
    )
    client = user_client(cluster.api_url)

    job_ids = await submit_many(client, 6)
    jobs = await all_terminal(client, job_ids, within=30)

    assert [job["status"] for job in jobs] == ["completed"] * 6, (dump(jobs), cluster.logs())
    workers = {(await rows.job(job_id))["worker_id"] for job_id in job_ids}
    assert workers == {healthy.worker_id}, (workers, stranded.worker_id)
    assert sorted(await prompt_ids(comfy)) == sorted(job_ids)
