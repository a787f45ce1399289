"""Fair turns between users: a newcomer's job overtakes another user's backlog, and a user alone
still gets every job through."""

from __future__ import annotations

import asyncio
import time

from tests.system.faults.harness import Cluster, dump, submit, wait_terminal
from tests.system.scale.helpers import Emulators, all_terminal, prompt_ids, submit_many

MAX_INFLIGHT = 2


async def test_a_newcomers_job_is_sent_before_another_users_backlog(
    cluster: Cluster, emulators: Emulators, user_client
) -> None:
    [comfy] = await emulators.start(1)
    await asyncio.gather(
        cluster.start_api(COMFYUI_URL=comfy.url),
        cluster.start_worker(COMFYUI_URL=comfy.url, COMFYUI_MAX_INFLIGHT=str(MAX_INFLIGHT)),
    )
    alice, bob = user_client(cluster.api_url, "backlog-alice"), user_client(cluster.api_url, "newcomer-bob")

    backlog = await submit_many(alice, 20)
    newcomer = await submit(bob)
    # Bob's job is queued once his 202 is back; a slot that freed while his upload was still
    # streaming rightly went to Alice. The emulator's clock is this host's too.
    submitted_at = time.time()
    job, _ = await wait_terminal(bob, newcomer, within=30)

    assert job["status"] == "completed", (job, cluster.logs())
    received = sorted((await comfy.state())["prompts"], key=lambda prompt: prompt["received_at"])
    order = [prompt["prompt_id"] for prompt in received]
    after = [prompt["prompt_id"] for prompt in received if prompt["received_at"] >= submitted_at]
    # Only the slots being filled when Bob's job was queued may go first; then it is his turn.
    assert newcomer in after[: MAX_INFLIGHT + 1], (after.index(newcomer), len(order) - len(after))
    # ... ahead of most of Alice's backlog (else this test would prove nothing).
    overtaken = set(backlog) - set(order[: order.index(newcomer)])
    assert len(overtaken) >= 10, len(overtaken)


async def test_a_user_alone_gets_every_job_of_a_backlog_done(
    cluster: Cluster, emulators: Emulators, user_client
) -> None:
    [comfy] = await emulators.start(1, service_time=0.1)
    await asyncio.gather(
        cluster.start_api(COMFYUI_URL=comfy.url),
        cluster.start_worker(COMFYUI_URL=comfy.url, COMFYUI_MAX_INFLIGHT=str(MAX_INFLIGHT)),
    )
    alice = user_client(cluster.api_url, "lonely-alice")

    backlog = await submit_many(alice, 8)
    jobs = await all_terminal(alice, backlog, within=40)

    assert [job["status"] for job in jobs] == ["completed"] * 8, (dump(jobs), cluster.logs())
    assert sorted(await prompt_ids(comfy)) == sorted(backlog)
