"""Cancelling a job the worker has, or will have, against the ComfyUI double: a pending job never
reaches ComfyUI; a processing one is withdrawn (interrupted while running, deleted while waiting,
never another client's prompt), its slot freed at once, and nothing stored; a cancel racing the
completion has exactly one outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from models import repository
from models.job import JobStatus, RestorationJob
from storage.base import ObjectStore
from tasks.deadline import fail_overdue_pending
from tasks.queue import JobQueue
from tasks.reconcile import Reconciler
from tasks.scheduler import SlotBoard
from tests.comfy.helpers import restore_workflow, upload
from tests.fixtures import images
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import post_photo

USER = "cancelling-carl"
# The contract: a processing job is cancelled, its prompt withdrawn and its slot free within 5 s.
CANCEL_WITHIN = 5.0
# A prompt of another client of the same ComfyUI server (not ours: its own client id and files).
FOREIGN_CLIENT = "someone-elses-app"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle):
    s3_server.reset()
    async with api.client(tokens.issue(sub=USER)) as client:
        yield client


@pytest.fixture
async def runs():
    """`runs(coroutine)`: a job run in the background; whatever still runs at the end is stopped."""
    started: list[asyncio.Task[None]] = []

    def start(coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        started.append(task)
        return task

    yield start
    for task in started:
        task.cancel()
    if started:
        await asyncio.wait(started)


@pytest.fixture
async def comfy_http(comfy: ComfyEmulatorHandle):
    async with httpx.AsyncClient(base_url=comfy.url, timeout=10) as http:
        yield http


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def cancel(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    return await client.post(f"/api/v1/restoration/jobs/{job_id}/cancel")


async def until(condition: Callable[[], Awaitable[Any]], *, within: float = 15.0) -> Any:
    """The first truthy value of `condition()`, asked every 20 ms (the double is seen over HTTP)."""
    deadline = time.monotonic() + within
    while not (value := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.02)
    return value


async def queue_of(http: httpx.AsyncClient) -> tuple[list[str], list[str]]:
    body = (await http.get("/queue")).json()
    return [item[1] for item in body["queue_running"]], [item[1] for item in body["queue_pending"]]


async def running(http: httpx.AsyncClient, prompt_id: str) -> bool:
    return prompt_id in (await queue_of(http))[0]


async def waiting(http: httpx.AsyncClient, prompt_id: str) -> bool:
    return prompt_id in (await queue_of(http))[1]


async def finished_in_comfyui(http: httpx.AsyncClient, prompt_id: str) -> bool:
    return prompt_id in (await http.get(f"/history/{prompt_id}")).json()


async def processing(job_id: str) -> bool:
    return await repository.job_status(job_id) is JobStatus.PROCESSING


async def post_foreign_prompt(http: httpx.AsyncClient, prompt_id: str) -> None:
    """Another client's prompt on the same server, with its own input file."""
    assert (await upload(http, "input.png", subfolder="other")).status_code == 200
    graph = restore_workflow(prefix=f"other/{prompt_id}", image="other/input.png")
    response = await http.post("/prompt", json={"prompt": graph, "prompt_id": prompt_id, "client_id": FOREIGN_CLIENT})
    assert response.status_code == 200, response.text


async def job_of(job_id: str) -> RestorationJob:
    return await RestorationJob.get(id=job_id)


def assert_cancelled_without_result(job: RestorationJob, s3: S3ServerHandle) -> None:
    assert job.status == JobStatus.CANCELLED
    assert job.processed_key is None
    assert s3.keys("restored/") == []
    assert s3.keys("originals/") == [f"originals/{job.id}.jpg"]
    assert job.lease_expires_at is None  # its prompt is out of ComfyUI: nothing left for the reconciler


async def test_cancelling_a_pending_job_takes_its_message_off_the_queue(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy: ComfyEmulatorHandle, s3_server: S3ServerHandle
) -> None:
    job_id = await submit(client)
    assert (await cancel(client, job_id)).json()["status"] == "cancelled"

    assert await worker.drain() == []
    assert (await comfy.state())["prompts"] == []
    assert_cancelled_without_result(await job_of(job_id), s3_server)


async def test_a_pending_job_cancelled_before_its_message_is_delivered_never_reaches_comfyui(
    client: httpx.AsyncClient,
    worker: InProcessWorker,
    job_queue: JobQueue,
    comfy: ComfyEmulatorHandle,
    s3_server: S3ServerHandle,
) -> None:
    job_id = await submit(client)
    assert (await cancel(client, job_id)).json()["status"] == "cancelled"
    # A message the cancel could not take back (Redis away at that moment, or queued again by the
    # reconciler from a stale read) is still delivered...
    await job_queue.enqueue_first(job_id)

    assert await worker.drain() == [job_id]

    state = await comfy.state()
    assert state["prompts"] == []  # ...but the claim refuses it: nothing was sent
    assert state["uploads"]["count"] == 0
    assert_cancelled_without_result(await job_of(job_id), s3_server)


async def test_cancelling_a_running_prompt_interrupts_it_and_only_it(
    client: httpx.AsyncClient,
    runs: Callable[[Awaitable[None]], asyncio.Task[None]],
    worker: InProcessWorker,
    comfy: ComfyEmulatorHandle,
    comfy_http: httpx.AsyncClient,
    s3_server: S3ServerHandle,
) -> None:
    await comfy.set_faults(mode="hang", times=1)  # ours runs until interrupted
    job_id = await submit(client)
    run = runs(worker.restorer.run(job_id))
    await until(lambda: running(comfy_http, job_id))
    await post_foreign_prompt(comfy_http, "foreign-after")  # waits behind ours

    started = time.monotonic()
    response = await cancel(client, job_id)
    await asyncio.wait_for(run, CANCEL_WITHIN)
    seconds = time.monotonic() - started

    assert response.status_code == 200
    assert seconds < CANCEL_WITHIN
    interrupts = (await comfy.state())["interrupts"]
    assert interrupts == [{"prompt_id": job_id, "running": [job_id], "applied": True}]
    ours = await comfy.wait_for_history(job_id)
    assert ours["status"]["messages"][-1][0] == "execution_interrupted"
    foreign = await comfy.wait_for_history("foreign-after")  # runs normally once ours stopped
    assert foreign["status"]["status_str"] == "success"
    assert_cancelled_without_result(await job_of(job_id), s3_server)


async def test_cancelling_a_prompt_waiting_in_comfyuis_queue_deletes_it_and_spares_the_running_one(
    client: httpx.AsyncClient,
    runs: Callable[[Awaitable[None]], asyncio.Task[None]],
    worker: InProcessWorker,
    comfy: ComfyEmulatorHandle,
    comfy_http: httpx.AsyncClient,
    s3_server: S3ServerHandle,
) -> None:
    await comfy.set_faults(mode="hang", times=1)
    await post_foreign_prompt(comfy_http, "foreign-running")  # runs until someone interrupts it
    await until(lambda: running(comfy_http, "foreign-running"))
    job_id = await submit(client)
    run = runs(worker.restorer.run(job_id))
    await until(lambda: waiting(comfy_http, job_id))

    response = await cancel(client, job_id)
    await asyncio.wait_for(run, CANCEL_WITHIN)

    assert response.status_code == 200
    state = await comfy.state()
    assert state["queue_deletes"] == [job_id]
    assert state["interrupts"] == []  # the other client's prompt was never interrupted
    assert await queue_of(comfy_http) == (["foreign-running"], [])
    assert (await comfy_http.get(f"/history/{job_id}")).json() == {}  # deleted: it never runs
    assert_cancelled_without_result(await job_of(job_id), s3_server)


async def test_a_cancelled_jobs_slot_goes_to_the_next_job_at_once(
    client: httpx.AsyncClient,
    runs: Callable[[Awaitable[None]], asyncio.Task[None]],
    worker: InProcessWorker,
    comfy: ComfyEmulatorHandle,
    comfy_http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    board = SlotBoard(redis.Redis.from_url(redis_url), capacity=1, lease_seconds=60)
    restorer = dataclasses.replace(worker.restorer, slots=board)
    await comfy.set_faults(mode="hang", times=1)  # the first job would hold the only slot for ever
    first, second = await submit(client), await submit(client)
    first_run = runs(restorer.run(first))
    await until(lambda: running(comfy_http, first))
    second_run = runs(restorer.run(second))  # waits for the slot

    cancelled_at = time.time()
    await cancel(client, first)
    await asyncio.wait_for(asyncio.gather(first_run, second_run), 15)

    [received] = [p["received_at"] for p in (await comfy.state())["prompts"] if p["prompt_id"] == second]
    assert received >= cancelled_at
    assert received - cancelled_at < CANCEL_WITHIN
    assert (await job_of(second)).status == JobStatus.COMPLETED
    assert (await job_of(first)).status == JobStatus.CANCELLED


@dataclasses.dataclass
class CancelAsItStores:
    """Storage that lets the job's cancel land right after the result was stored, before the
    worker marks the job completed: the tightest moment of the race, made to happen every time."""

    inner: ObjectStore
    cancel: Callable[[str], Awaitable[httpx.Response]]
    answers: list[int] = dataclasses.field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> None:
        await self.inner.put_bytes(key, data, **kwargs)
        if key.startswith("restored/"):
            job_id = key.removeprefix("restored/").removesuffix(".png")
            self.answers.append((await self.cancel(job_id)).status_code)


async def test_a_result_stored_just_before_the_cancel_won_is_deleted(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    storage = CancelAsItStores(worker.restorer.storage, lambda job_id: cancel(client, job_id))
    restorer = dataclasses.replace(worker.restorer, storage=storage)  # type: ignore[arg-type]
    job_id = await submit(client)

    await restorer.run(job_id)

    assert storage.answers == [200]
    assert_cancelled_without_result(await job_of(job_id), s3_server)


RACE_ROUNDS = 12
RACE_STEP_SECONDS = 0.005


async def test_a_cancel_racing_the_completion_has_exactly_one_outcome(
    client: httpx.AsyncClient,
    runs: Callable[[Awaitable[None]], asyncio.Task[None]],
    worker: InProcessWorker,
    comfy: ComfyEmulatorHandle,
    comfy_http: httpx.AsyncClient,
    s3_server: S3ServerHandle,
) -> None:
    """The cancel is sent once ComfyUI's history has the finished prompt, a little later each round
    (the worker is then fetching, storing or completing it, or done). Whichever wins, the API's
    answer, the row and storage agree; the delays only spread the rounds over the race, no
    assertion depends on them."""
    for round_number in range(RACE_ROUNDS):
        job_id = await submit(client)
        run = runs(worker.restorer.run(job_id))
        await until(lambda job_id=job_id: finished_in_comfyui(comfy_http, job_id))
        await asyncio.sleep(round_number * RACE_STEP_SECONDS)
        answer = await cancel(client, job_id)
        await asyncio.wait_for(run, CANCEL_WITHIN)
        job = await job_of(job_id)
        restored = s3_server.keys(f"restored/{job_id}")
        if answer.status_code == 200:
            assert (job.status, job.processed_key, restored) == (JobStatus.CANCELLED, None, [])
        else:
            assert answer.status_code == 409
            assert (job.status, job.processed_key, restored) == (
                JobStatus.COMPLETED,
                f"restored/{job_id}.png",
                [f"restored/{job_id}.png"],
            )


async def test_a_job_cancelled_while_its_worker_waits_for_a_slot_is_never_sent(
    client: httpx.AsyncClient,
    runs: Callable[[Awaitable[None]], asyncio.Task[None]],
    worker: InProcessWorker,
    comfy: ComfyEmulatorHandle,
    comfy_http: httpx.AsyncClient,
    redis_url: str,
    s3_server: S3ServerHandle,
) -> None:
    board = SlotBoard(redis.Redis.from_url(redis_url), capacity=1, lease_seconds=60)
    restorer = dataclasses.replace(worker.restorer, slots=board)
    await comfy.set_faults(mode="hang", times=1)
    first, second = await submit(client), await submit(client)
    first_run = runs(restorer.run(first))
    await until(lambda: running(comfy_http, first))
    second_run = runs(restorer.run(second))
    await until(lambda: processing(second))  # claimed; waiting for the slot the first job holds

    assert (await cancel(client, second)).status_code == 200
    await asyncio.wait_for(second_run, CANCEL_WITHIN)

    assert [p["prompt_id"] for p in (await comfy.state())["prompts"]] == [first]
    assert (await job_of(second)).status == JobStatus.CANCELLED
    await cancel(client, first)
    await asyncio.wait_for(first_run, CANCEL_WITHIN)


async def test_the_pending_deadline_leaves_a_cancelled_job_alone(client: httpx.AsyncClient) -> None:
    overdue, cancelled = await submit(client), await submit(client)
    await cancel(client, cancelled)
    long_ago = datetime.now(UTC) - timedelta(seconds=400)
    await RestorationJob.filter(id__in=[overdue, cancelled]).update(created_at=long_ago)

    await fail_overdue_pending(timeout_seconds=300, servers=["http://gpu.internal:8188"])

    assert (await job_of(overdue)).status == JobStatus.FAILED
    assert (await job_of(cancelled)).status == JobStatus.CANCELLED


async def test_the_reconciler_never_queues_a_cancelled_job_again(
    client: httpx.AsyncClient, worker: InProcessWorker, redis_url: str
) -> None:
    lost, cancelled = await submit(client), await submit(client)
    await cancel(client, cancelled)
    worker.queue.huey.flush()  # both messages lost
    events = aioredis.Redis.from_url(redis_url)
    try:
        reconciler = Reconciler(restorer=worker.restorer, queue=worker.queue, redis=events, interval=1, pending_grace=0)
        await reconciler.run_once()
    finally:
        await events.aclose()

    queued = await worker.queue.queued_ids()
    assert lost in queued
    assert cancelled not in queued
