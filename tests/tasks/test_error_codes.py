"""Every failure path ends in one of the contract's error codes, driven by a real failure through the
real pipeline: the code, `retryable`, and a message for the owner that names no host, port, URL,
bucket or path. REST and GraphQL expose the code exactly when the job failed; the metric counts it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from models import repository
from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from tasks.events import JobEvent
from tasks.queue import JobQueue
from tasks.reconcile import Reconciler
from tests.fixtures import images
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker, servers_at
from tests.gql.helpers import graphql, post_photo
from tests.gql.ws import GraphQLSocket
from workflows.binding import Workflow

CONTRACT_CODES = [
    "COMFYUI_UNAVAILABLE",
    "COMFYUI_REJECTED",
    "COMFYUI_ERROR",
    "JOB_LOST",
    "TIMEOUT",
    "STORAGE_ERROR",
    "INTERNAL",
]
JOB_QUERY = "query($id: ID!) { job(id: $id) { status errorMessage errorCode retryable } }"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle):
    s3_server.reset()
    async with api.client(tokens.issue(sub="erin")) as client:
        yield client


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def failed_count(code: str) -> float:
    return REGISTRY.get_sample_value("restoration_jobs_failed_total", {"code": code}) or 0.0


def assert_private(message: str, *, hosts: list[str], s3: S3ServerHandle) -> None:
    """Nothing of the deployment's insides in the owner's message."""
    assert "http" not in message.lower(), message
    assert "/" not in message, message
    assert "\\" not in message, message
    assert s3.bucket not in message, message
    for url in [*hosts, s3.endpoint_url]:
        parts = urlsplit(url)
        assert str(parts.hostname) not in message, message
        assert str(parts.port) not in message, message


async def assert_failed(
    job_id: str, code: ErrorCode, *, retryable: bool, s3: S3ServerHandle, hosts: list[str]
) -> RestorationJob:
    job = await RestorationJob.get(id=job_id)
    assert job.status == JobStatus.FAILED, job.error_message
    assert (job.error_code, job.retryable) == (code, retryable), job.error_message
    assert job.error_message
    assert_private(job.error_message, hosts=hosts, s3=s3)
    return job


def with_graph(workflow: Workflow, change: dict[str, dict]) -> Workflow:
    graph = json.loads(json.dumps(workflow.graph))
    for node, patch in change.items():
        graph[node] = patch if "class_type" in patch else {**graph[node], "inputs": {**graph[node]["inputs"], **patch}}
    return dataclasses.replace(workflow, graph=graph)


# -- COMFYUI_REJECTED ----------------------------------------------------------------------------


async def test_a_400_from_prompt_is_comfyui_rejected_and_not_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow, comfy, s3_server: S3ServerHandle
) -> None:
    worker.restorer.workflow = with_graph(workflow, {"37": {"unet_name": "models/no-such-model.safetensors"}})
    before = failed_count("COMFYUI_REJECTED")
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.COMFYUI_REJECTED, retryable=False, s3=s3_server, hosts=[comfy.url])
    assert "node 37 (UNETLoader)" in job.error_message
    assert failed_count("COMFYUI_REJECTED") == before + 1


async def test_a_200_with_node_errors_is_comfyui_rejected(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow, comfy, s3_server: S3ServerHandle
) -> None:
    worker.restorer.workflow = with_graph(
        workflow,
        {
            "900": {
                "class_type": "ImageScaleToTotalPixels",
                "inputs": {"image": ["41", 0], "upscale_method": "lanczos", "megapixels": 99.0},
            },
            "901": {"class_type": "SaveImage", "inputs": {"images": ["900", 0], "filename_prefix": "bad/branch"}},
        },
    )
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.COMFYUI_REJECTED, retryable=False, s3=s3_server, hosts=[comfy.url])
    assert "node 900 (ImageScaleToTotalPixels)" in job.error_message


# -- COMFYUI_ERROR -------------------------------------------------------------------------------


async def test_an_out_of_memory_execution_error_is_comfyui_error_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(
        mode="execution_error", node="31", exception_type="torch.OutOfMemoryError", message="CUDA out of memory"
    )
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.COMFYUI_ERROR, retryable=True, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "ComfyUI node 31 (KSampler) failed: CUDA out of memory"


async def test_another_execution_error_is_comfyui_error_not_retryable_and_hides_the_path_it_named(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(
        mode="execution_error",
        node="31",
        exception_type="FileNotFoundError",
        message=f"[Errno 2] No such file or directory: '/opt/comfyui/models/vae.safetensors' (from {comfy.url}/view)",
    )
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.COMFYUI_ERROR, retryable=False, s3=s3_server, hosts=[comfy.url])
    assert job.error_message.startswith("ComfyUI node 31 (KSampler) failed: [Errno 2] No such file or directory")


async def test_an_interrupted_run_is_comfyui_error_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(service_time=3.0)
    job_id = await submit(client)
    run = asyncio.create_task(worker.drain())
    await running_in_comfyui(comfy, job_id)
    async with httpx.AsyncClient(base_url=comfy.url) as http:  # someone presses "cancel" in ComfyUI's page
        assert (await http.post("/interrupt", json={"prompt_id": job_id})).status_code == 200
    await run
    await assert_failed(job_id, ErrorCode.COMFYUI_ERROR, retryable=True, s3=s3_server, hosts=[comfy.url])


# -- COMFYUI_UNAVAILABLE -------------------------------------------------------------------------


async def test_an_unreachable_comfyui_is_comfyui_unavailable_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with servers_at(nowhere, expect_up=False) as servers:
        restorer = dataclasses.replace(worker.restorer, servers=servers, job_timeout=1.0)
        job_id = await submit(client)
        await restorer.run(job_id)
    await assert_failed(job_id, ErrorCode.COMFYUI_UNAVAILABLE, retryable=True, s3=s3_server, hosts=[nowhere])


async def test_comfyui_dying_mid_run_and_staying_down_is_comfyui_unavailable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(mode="die", node="31")
    job_id = await submit(client)
    await worker.drain()
    await assert_failed(job_id, ErrorCode.COMFYUI_UNAVAILABLE, retryable=True, s3=s3_server, hosts=[comfy.url])


# -- JOB_LOST ------------------------------------------------------------------------------------


async def running_in_comfyui(comfy: ComfyEmulatorHandle, prompt_id: str) -> None:
    async with asyncio.timeout(15):
        while prompt_id not in (await comfy.state())["queue"]["running"]:  # noqa: ASYNC110 - observed over HTTP
            await asyncio.sleep(0.02)


async def test_comfyui_restarting_mid_run_is_job_lost_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(service_time=3.0)
    job_id = await submit(client)
    run = asyncio.create_task(worker.drain())
    await running_in_comfyui(comfy, job_id)
    await asyncio.to_thread(comfy.kill)
    await asyncio.to_thread(comfy.start)  # same port, empty queue and history
    await run
    job = await assert_failed(job_id, ErrorCode.JOB_LOST, retryable=True, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "ComfyUI restarted; the job was lost"


async def test_a_vanished_worker_whose_job_comfyui_never_saw_is_job_lost(
    client: httpx.AsyncClient,
    worker: InProcessWorker,
    comfy,
    job_queue: JobQueue,
    redis_url: str,
    s3_server: S3ServerHandle,
) -> None:
    job_id = await submit(client)
    # A worker claimed it, then died before ComfyUI heard of it: its lease is already out.
    assert await repository.claim_job(job_id, worker_id="vanished", lease_seconds=-1) is not None
    redis = aioredis.Redis.from_url(redis_url)
    try:
        reconciler = Reconciler(restorer=worker.restorer, queue=job_queue, redis=redis, interval=1.0)
        assert (await reconciler.run_once()).settled >= 1
    finally:
        await redis.aclose()
    await assert_failed(job_id, ErrorCode.JOB_LOST, retryable=True, s3=s3_server, hosts=[comfy.url])


# -- TIMEOUT -------------------------------------------------------------------------------------


async def test_the_job_timeout_is_timeout_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(mode="hang")
    worker.restorer.job_timeout = 1.0
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.TIMEOUT, retryable=True, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "the job did not finish within 1 s"


# -- STORAGE_ERROR -------------------------------------------------------------------------------


async def test_storage_down_at_the_result_upload_is_storage_error_and_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle
) -> None:
    await comfy.set_faults(service_time=1.0)
    job_id = await submit(client)
    run = asyncio.create_task(worker.drain())
    await running_in_comfyui(comfy, job_id)  # the original was read; the result is yet to be stored
    s3_server.stop()
    try:
        await run
    finally:
        s3_server.start()
    job = await assert_failed(job_id, ErrorCode.STORAGE_ERROR, retryable=True, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "the restored image could not be saved to storage"


async def test_an_original_missing_from_storage_is_storage_error(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client)
    s3_server.client.delete_object(Bucket=s3_server.bucket, Key=f"originals/{job_id}.jpg")
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.STORAGE_ERROR, retryable=True, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "the original photo could not be read from storage"
    assert job_id not in job.error_message


# -- INTERNAL ------------------------------------------------------------------------------------


class BrokenWorkflow(Workflow):
    """A workflow whose binding code has a bug."""

    def build(
        self, *, image_name: str, denoise: float, filename_prefix: str, seed: int | None = None
    ) -> dict[str, Any]:
        raise KeyError("seed")


async def test_a_bug_in_our_code_is_internal_and_not_retryable(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow, comfy, s3_server: S3ServerHandle
) -> None:
    worker.restorer.workflow = BrokenWorkflow(
        **{f.name: getattr(workflow, f.name) for f in dataclasses.fields(workflow)}
    )
    before = failed_count("INTERNAL")
    job_id = await submit(client)
    await worker.drain()
    job = await assert_failed(job_id, ErrorCode.INTERNAL, retryable=False, s3=s3_server, hosts=[comfy.url])
    assert job.error_message == "internal error while restoring the image"
    assert (await comfy.state())["prompts"] == []
    assert failed_count("INTERNAL") == before + 1


async def test_an_original_that_cannot_be_prepared_for_comfyui_is_internal(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client)
    s3_server.client.put_object(Bucket=s3_server.bucket, Key=f"originals/{job_id}.jpg", Body=b"not an image")
    await worker.drain()
    await assert_failed(job_id, ErrorCode.INTERNAL, retryable=False, s3=s3_server, hosts=[comfy.url])


async def test_a_comfyui_answer_without_the_output_image_is_internal(
    client: httpx.AsyncClient, worker: InProcessWorker, workflow: Workflow, comfy, s3_server: S3ServerHandle
) -> None:
    worker.restorer.workflow = dataclasses.replace(workflow, output_node="31")  # the sampler saves no image
    job_id = await submit(client)
    await worker.drain()
    await assert_failed(job_id, ErrorCode.INTERNAL, retryable=False, s3=s3_server, hosts=[comfy.url])


# -- what clients see ----------------------------------------------------------------------------


async def test_rest_and_graphql_expose_the_code_of_a_failed_job(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(mode="execution_error", node="31", message="CUDA out of memory")
    job_id = await submit(client)
    await worker.drain()

    rest = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
    assert (rest["status"], rest["error_code"], rest["retryable"]) == ("failed", "COMFYUI_ERROR", True)
    gql = (await graphql(client, JOB_QUERY, id=job_id)).json()["data"]["job"]
    assert gql == {
        "status": "FAILED",
        "errorMessage": rest["error_message"],
        "errorCode": "COMFYUI_ERROR",
        "retryable": True,
    }


async def test_rest_and_graphql_give_no_code_for_pending_or_completed_jobs(
    client: httpx.AsyncClient, worker: InProcessWorker
) -> None:
    completed = await submit(client)
    await worker.drain()
    pending = await submit(client)

    for job_id, status in ((pending, "pending"), (completed, "completed")):
        rest = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
        assert (rest["status"], rest["error_code"], rest["retryable"]) == (status, None, None)
        gql = (await graphql(client, JOB_QUERY, id=job_id)).json()["data"]["job"]
        assert (gql["errorCode"], gql["retryable"]) == (None, None)


async def test_the_job_updated_subscription_carries_the_code_of_the_failure(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(mode="execution_error", node="31", message="shapes cannot be multiplied")
    job_id = await submit(client)
    socket = await GraphQLSocket.open(api.url)
    try:
        assert (await socket.init({"Authorization": f"Bearer {tokens.issue(sub='erin')}"}))["type"] == "connection_ack"
        await socket.subscribe(
            "subscription($id: ID!) { jobUpdated(id: $id) { status errorCode retryable } }", {"id": job_id}
        )
        first = (await socket.receive())["payload"]["data"]["jobUpdated"]
        assert first == {"status": "PENDING", "errorCode": None, "retryable": None}
        await worker.drain()
        final = (await socket.results())[-1]["data"]["jobUpdated"]
    finally:
        await socket.close()
    assert final == {"status": "FAILED", "errorCode": "COMFYUI_ERROR", "retryable": False}


async def test_an_event_from_a_worker_of_the_previous_version_still_decodes() -> None:
    now = "2026-11-22T00:00:00+00:00"
    old = {
        "id": str(uuid.uuid4()),
        "seq": 3,
        "status": "failed",
        "denoise": 0.5,
        "original_key": "originals/x.jpg",
        "processed_key": None,
        "error_message": "boom",
        "progress": None,
        "created_at": now,
        "updated_at": now,
    }
    event = JobEvent.decode(json.dumps(old))
    assert (event.error_code, event.retryable) == (None, None)


# -- the code table itself -----------------------------------------------------------------------


def test_the_codes_are_exactly_the_contracts_in_the_model_and_in_graphql() -> None:
    from gql.schema import create_schema
    from gql.types import ErrorCode as GraphQLErrorCode

    assert [code.value for code in ErrorCode] == CONTRACT_CODES
    assert [code.value for code in GraphQLErrorCode] == CONTRACT_CODES
    members = "\n  ".join(CONTRACT_CODES)
    assert f"enum ErrorCode {{\n  {members}\n}}" in create_schema().as_str()


def test_every_code_is_exported_by_the_failed_metric_before_it_happens() -> None:
    import tasks.metrics  # noqa: F401 - the counter is registered at import

    for code in CONTRACT_CODES:
        assert REGISTRY.get_sample_value("restoration_jobs_failed_total", {"code": code}) is not None, code


def test_the_error_code_module_does_not_pull_in_the_orm() -> None:
    probe = "import sys, models.error_codes, comfy.errors, storage.errors; print('tortoise' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
