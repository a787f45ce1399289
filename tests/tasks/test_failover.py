"""A server that cannot even be connected to before the prompt is sent: the job goes elsewhere."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from models.job import JobStatus, RestorationJob
from tasks.queue import JobQueue
from tasks.scheduler import SlotBoard
from tests.fixtures import images
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker, servers_at
from tests.gql.helpers import post_photo


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle):
    s3_server.reset()
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {tokens.issue(sub='failover-fay')}"}
    ) as http:
        yield http


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(64, 48))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_a_job_whose_server_vanished_before_sending_goes_back_to_the_head_of_the_queue(
    client: httpx.AsyncClient, worker: InProcessWorker, job_queue: JobQueue, slot_board: SlotBoard
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with servers_at(dead, expect_up=False) as servers:
        restorer = dataclasses.replace(worker.restorer, servers=servers, requeue=job_queue.enqueue_first)
        job_id = await submit(client)
        job_queue.huey.flush()
        slot = slot_board.acquire([dead], owner="test")
        assert slot is not None

        await restorer.run(job_id, slot)

        job = await RestorationJob.get(id=job_id)
        assert (job.status, job.worker_id, job.comfy_server) == (JobStatus.PENDING, None, None)
        assert await job_queue.queued_ids() == {job_id}
        assert servers.reachable() == []
        assert slot_board.loads([dead]) == {dead: 0}


async def test_without_a_queue_to_go_back_to_the_job_waits_for_another_server(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, slot_board: SlotBoard
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with servers_at(dead, comfy.url) as servers:
        restorer = dataclasses.replace(worker.restorer, servers=servers, requeue=None)
        job_id = await submit(client)
        slot = slot_board.acquire([dead], owner="test")
        assert slot is not None

        await restorer.run(job_id, slot)

    job = await RestorationJob.get(id=job_id)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.comfy_server == comfy.url
