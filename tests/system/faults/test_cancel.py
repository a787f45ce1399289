"""Cancelling with the real processes (`restoration api` + `restoration worker`, one ComfyUI slot):
the running prompt is interrupted, its slot goes back through the worker's slot gate at once, so
the job that waited for it starts; nothing of the cancelled job is stored but its original."""

from __future__ import annotations

import time

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.harness import Cluster, comfy_running, read_job, submit, wait_for_status

# The contract: a processing job is cancelled and its prompt withdrawn within 5 s.
CANCEL_WITHIN = 5.0


async def test_a_cancelled_running_job_hands_its_only_slot_to_the_waiting_job(
    cluster: Cluster, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle, client_factory
) -> None:
    await cluster.start_api()
    await cluster.start_worker(COMFYUI_MAX_INFLIGHT="1")
    client = client_factory(cluster.api_url)
    await comfy.set_faults(mode="hang", times=1)  # the first prompt would hold the slot for ever
    first = await submit(client)
    await comfy_running(comfy, first)
    second = await submit(client)
    assert (await read_job(client, second))["status"] == "pending"  # no slot for it

    cancelled_at = time.time()
    response = await client.post(f"/api/v1/restoration/jobs/{first}/cancel")
    assert response.status_code == 200
    await wait_for_status(client, first, ("cancelled",), within=CANCEL_WITHIN)
    done, _ = await wait_for_status(client, second, ("completed", "failed"), within=30)

    assert done["status"] == "completed", cluster.logs()
    state = await comfy.state()
    assert [entry["prompt_id"] for entry in state["interrupts"] if entry["applied"]] == [first]
    [received] = [prompt["received_at"] for prompt in state["prompts"] if prompt["prompt_id"] == second]
    assert 0 <= received - cancelled_at < CANCEL_WITHIN  # the slot came back at once
    assert (await comfy.wait_for_history(first))["status"]["messages"][-1][0] == "execution_interrupted"
    assert s3_server.keys() == sorted([f"originals/{first}.jpg", f"originals/{second}.jpg", f"restored/{second}.png"])
