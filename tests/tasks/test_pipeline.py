"""The worker pipeline against the ComfyUI double: every job ends completed or failed, with a reason."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
import uuid

import httpx
import pytest
import redis
from PIL import Image

from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from tasks.scheduler import SlotBoard
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker, servers_at
from tests.gql.helpers import graphql_upload, post_photo
from workflows.binding import Workflow


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle):
    s3_server.reset()
    async with api.client(tokens.issue(sub="wendy")) as client:
        yield client


async def submit(client: httpx.AsyncClient, data: bytes | None = None, **fields: str) -> str:
    response = await post_photo(client, data or images.jpeg_bytes(320, 240), **fields)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def job_of(job_id: str) -> RestorationJob:
    return await RestorationJob.get(id=job_id)


def cancelled(state: dict) -> set[str]:
    """Prompt ids the double was asked to interrupt or to remove from its queue."""
    return {entry["prompt_id"] for entry in state["interrupts"]} | set(state["queue_deletes"])


def read_object(s3: S3ServerHandle, key: str) -> bytes:
    return s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()


@pytest.mark.parametrize(
    ("data", "extension"),
    images.accepted_formats(320, 240),
    ids=images.FORMAT_IDS,
)
async def test_rest_upload_is_restored_and_both_images_are_kept(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle, data: bytes, extension: str
) -> None:
    job_id = await submit(client, data)

    assert await worker.drain() == [job_id]

    job = await job_of(job_id)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert sorted(s3_server.keys()) == [f"originals/{job_id}.{extension}", f"restored/{job_id}.png"]
    view = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
    assert f"/restored/{job_id}.png" in view["processed_image_url"]
    assert view["error_message"] is None


@pytest.mark.parametrize(("data", "extension"), images.accepted_formats(320, 240), ids=images.FORMAT_IDS)
async def test_graphql_upload_is_restored(
    client: httpx.AsyncClient, worker: InProcessWorker, data: bytes, extension: str
) -> None:
    job_id = (await graphql_upload(client, data)).json()["data"]["restoreImage"]["id"]
    await worker.drain()
    assert (await job_of(job_id)).status == JobStatus.COMPLETED


async def test_restored_image_carries_no_comfyui_metadata(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client)
    await worker.drain()
    restored = Image.open(io.BytesIO(read_object(s3_server, f"restored/{job_id}.png")))
    assert restored.format == "PNG"
    assert "prompt" not in restored.info
    assert "workflow" not in restored.info


async def test_prompt_binds_the_jobs_values(client: httpx.AsyncClient, worker: InProcessWorker, comfy) -> None:
    job_id = await submit(client, denoise="0.35")
    await worker.drain()

    [posted] = (await comfy.state())["prompts"]
    assert posted["prompt_id"] == job_id
    assert posted["client_id"] == worker.comfy.client_id
    graph = posted["prompt"]
    assert graph["31"]["inputs"]["denoise"] == 0.35
    assert isinstance(graph["31"]["inputs"]["seed"], int)
    assert graph["42"]["inputs"]["megapixels"] == 1.0
    assert graph["136"]["inputs"]["filename_prefix"] == f"restore/{job_id}/restored"
    assert graph["41"]["inputs"]["image"] == "restore/slot-0.jpg"  # the slot's file, the JPEG as it was


async def test_input_files_are_reused_per_slot_not_one_per_job(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    for _ in range(4):
        await submit(client)
    await worker.drain()
    names = set((await comfy.state())["uploads"]["names"])
    assert len(names) <= worker.restorer.slots.capacity


async def test_exif_orientation_is_applied_before_comfyui(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client, images.jpeg_bytes(320, 240, exif_orientation=6))
    await worker.drain()
    restored = Image.open(io.BytesIO(read_object(s3_server, f"restored/{job_id}.png")))
    assert restored.height > restored.width


async def test_execution_error_fails_the_job_naming_the_node(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(
        mode="execution_error", node="31", exception_type="torch.OutOfMemoryError", message="CUDA out of memory"
    )
    job_id = await submit(client)
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.COMFYUI_ERROR
    assert job.error_message == "ComfyUI node 31 (KSampler) failed: CUDA out of memory"
    view = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
    assert view["error_message"] == job.error_message
    assert view["processed_image_url"] is None


async def test_validation_400_fails_the_job_with_comfyuis_reason(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow
) -> None:
    graph = json.loads(json.dumps(workflow.graph))
    graph["37"]["inputs"]["unet_name"] = "no-such-model.safetensors"
    worker.restorer.workflow = dataclasses.replace(workflow, graph=graph)
    job_id = await submit(client)
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.COMFYUI_REJECTED
    assert job.error_message.startswith("ComfyUI rejected the workflow: node 37 (UNETLoader)")
    assert "no-such-model.safetensors" in job.error_message


async def test_200_with_node_errors_fails_the_job_and_cancels_the_partial_run(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow, comfy
) -> None:
    graph = json.loads(json.dumps(workflow.graph))
    graph["900"] = {
        "class_type": "ImageScaleToTotalPixels",
        "inputs": {"image": ["41", 0], "upscale_method": "lanczos", "megapixels": 99.0},
    }
    graph["901"] = {"class_type": "SaveImage", "inputs": {"images": ["900", 0], "filename_prefix": "bad/branch"}}
    worker.restorer.workflow = dataclasses.replace(workflow, graph=graph)
    job_id = await submit(client)
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.COMFYUI_REJECTED
    assert "node 900 (ImageScaleToTotalPixels)" in job.error_message
    assert job_id in cancelled(await comfy.state())


async def test_silent_socket_is_settled_from_history(client: httpx.AsyncClient, worker: InProcessWorker, comfy) -> None:
    await comfy.set_faults(mode="silent_socket")
    job_id = await submit(client)
    await worker.drain()
    assert (await job_of(job_id)).status == JobStatus.COMPLETED


async def test_large_binary_frames_do_not_break_the_socket(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(large_binary_frame=True)
    job_id = await submit(client)
    await worker.drain()
    assert (await job_of(job_id)).status == JobStatus.COMPLETED
    assert worker.comfy.connected.is_set()


async def test_comfyui_dying_mid_run_fails_the_job_as_unavailable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(mode="die", node="31")
    job_id = await submit(client)
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.COMFYUI_UNAVAILABLE


async def test_a_job_that_finds_no_reachable_server_fails_unavailable_at_its_deadline(
    client: httpx.AsyncClient, worker: InProcessWorker
) -> None:
    async with servers_at(f"http://127.0.0.1:{free_port()}", expect_up=False) as nowhere:
        restorer = dataclasses.replace(worker.restorer, servers=nowhere, job_timeout=1.0)
        job_id = await submit(client)
        started = time.monotonic()
        await restorer.run(job_id)
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.COMFYUI_UNAVAILABLE
    assert job.error_message is not None
    assert "1 server tried" in job.error_message
    assert "127.0.0.1" not in job.error_message
    assert 1.0 <= time.monotonic() - started < 5


async def test_job_timeout_fails_the_job_and_interrupts_comfyui(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(mode="hang")
    worker.restorer.job_timeout = 1.0
    job_id = await submit(client)
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.TIMEOUT
    assert job_id in cancelled(await comfy.state())


async def test_storage_failure_at_result_upload_fails_the_job_and_keeps_the_original(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(service_time=1.0)
    job_id = await submit(client)
    run = asyncio.create_task(worker.drain())
    while not (await comfy.state())["prompts"]:  # noqa: ASYNC110 - the double is observed over HTTP
        await asyncio.sleep(0.05)
    s3_server.stop()
    try:
        await run
    finally:
        s3_server.start()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.STORAGE_ERROR
    assert s3_server.keys() == [f"originals/{job_id}.jpg"]


async def test_missing_original_fails_the_job(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client)
    s3_server.client.delete_object(Bucket=s3_server.bucket, Key=f"originals/{job_id}.jpg")
    await worker.drain()
    job = await job_of(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error_code == ErrorCode.STORAGE_ERROR


async def test_a_job_is_claimed_once_so_a_duplicate_delivery_is_harmless(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    job_id = await submit(client)
    await worker.drain()
    await worker.restorer.run(job_id)
    assert len((await comfy.state())["prompts"]) == 1
    assert (await job_of(job_id)).status == JobStatus.COMPLETED


async def test_unknown_job_id_is_ignored(worker: InProcessWorker, comfy) -> None:
    job_id = str(uuid.uuid4())
    await worker.restorer.run(job_id)
    assert await RestorationJob.get_or_none(id=job_id) is None
    assert (await comfy.state())["prompts"] == []


async def test_at_most_max_inflight_prompts_are_in_comfyui_at_once(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, redis_url: str
) -> None:
    await comfy.set_faults(service_time=0.3)
    restorer = dataclasses.replace(
        worker.restorer, slots=SlotBoard(redis.Redis.from_url(redis_url), capacity=1, lease_seconds=60)
    )
    ids = [await submit(client) for _ in range(3)]

    await asyncio.gather(*(restorer.run(job_id) for job_id in ids))

    received = sorted(prompt["received_at"] for prompt in (await comfy.state())["prompts"])
    finished = []
    for job_id in ids:
        messages = (await comfy.wait_for_history(job_id))["status"]["messages"]
        finished += [data["timestamp"] / 1000 for kind, data in messages if kind == "execution_success"]
    finished.sort()
    assert len(received) == len(finished) == 3
    # One slot: each prompt reaches ComfyUI only after the previous one has finished.
    assert all(later >= done for later, done in zip(received[1:], finished[:-1], strict=True))


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outcomes_are_counted_in_the_metrics(client: httpx.AsyncClient, worker: InProcessWorker, comfy) -> None:
    completed, failed = (
        sample("restoration_jobs_completed_total"),
        sample("restoration_jobs_failed_total", code="COMFYUI_ERROR"),
    )
    await submit(client)
    await worker.drain()
    await comfy.set_faults(mode="execution_error", node="31", message="boom")
    await submit(client)
    await worker.drain()
    assert sample("restoration_jobs_completed_total") == completed + 1
    assert sample("restoration_jobs_failed_total", code="COMFYUI_ERROR") == failed + 1
