"""queue_position against what really happens: real API and worker processes, a ComfyUI emulator,
several users; the places read before the worker starts are the order ComfyUI receives the jobs."""

from __future__ import annotations

import asyncio

from tests.system.faults.harness import Cluster, dump, read_job
from tests.system.scale.helpers import Emulators, all_terminal, prompt_ids, submit_many

# One prompt at a time on one server, one consumer thread: the start order is the order of arrival
# at ComfyUI, with nothing overlapping.
MAX_INFLIGHT = 1


async def test_the_places_of_a_backlog_of_several_users_are_the_order_the_jobs_start(
    cluster: Cluster, emulators: Emulators, user_client
) -> None:
    [comfy] = await emulators.start(1, service_time=0.05)
    await cluster.start_api(COMFYUI_URL=comfy.url)
    users = [user_client(cluster.api_url, f"{name}-queue") for name in ("alice", "bob", "carol")]
    submitted: list[str] = []
    owner = {}
    for client, count in zip(users, (5, 3, 2), strict=True):  # alice first: arrival order is unfair
        ids = await submit_many(client, count)
        submitted += ids
        owner.update(dict.fromkeys(ids, client))

    before = {job_id: await read_job(owner[job_id], job_id) for job_id in submitted}
    await cluster.start_worker(COMFYUI_URL=comfy.url, COMFYUI_MAX_INFLIGHT=str(MAX_INFLIGHT), concurrency=1)
    jobs = await asyncio.gather(*(all_terminal(owner[job_id], [job_id], within=60) for job_id in submitted))

    assert all(job["status"] == "completed" for [job] in jobs), (dump(jobs), cluster.logs())
    places = {job_id: job["queue_position"] for job_id, job in before.items()}
    assert sorted(places.values()) == list(range(1, len(submitted) + 1)), places
    by_place = sorted(submitted, key=lambda job_id: places[job_id])
    assert await prompt_ids(comfy) == by_place
    assert by_place[:3] != submitted[:3]  # the fair order, not the arrival order
    assert all(job["queue_position"] is None and job["eta_seconds"] is None for [job] in jobs)
