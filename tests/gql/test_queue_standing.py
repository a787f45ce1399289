"""queue_position and eta_seconds as clients see them: REST, GraphQL queries and subscriptions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from huey import RedisHuey

from gql.views import JobView, placed
from models.job import JobStatus
from tasks.queue import JobQueue, create_huey
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import graphql, post_photo
from tests.gql.ws import GraphQLSocket

JOB = "query($id: ID!) { job(id: $id) { id status queuePosition etaSeconds } }"
JOB_UPDATED = "subscription($id: ID!) { jobUpdated(id: $id) { id status queuePosition etaSeconds } }"
JOBS_UPDATED = "subscription { jobsUpdated { id status queuePosition etaSeconds } }"
# Long enough for a measured execution to be well above the ETA's 0.1 s rounding.
SERVICE_TIME = 0.3


@pytest.fixture
def user() -> str:
    return f"waiter-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server, job_queue: JobQueue, user: str):
    s3_server.reset()
    job_queue.estimates.clear()
    async with api.client(tokens.issue(sub=user)) as client:
        yield client
    job_queue.estimates.clear()


async def submit(client: httpx.AsyncClient) -> dict:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202
    return response.json()


async def rest_job(client: httpx.AsyncClient, job_id: str) -> dict:
    response = await client.get(f"/api/v1/restoration/jobs/{job_id}")
    assert response.status_code == 200
    return response.json()


async def start_next(queued: RedisHuey) -> str:
    """What a worker does first: take the next message off the queue (the job starts)."""
    task = await asyncio.to_thread(queued.dequeue)
    assert task is not None
    return str(task.args[0])


async def subscribed(api: ApiServer, token: str, query: str, variables: dict) -> GraphQLSocket:
    hub = api.app.state.services.events  # type: ignore[attr-defined]
    before = hub.watcher_count
    socket = await GraphQLSocket.open(api.url)
    assert (await socket.init({"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    await socket.subscribe(query, variables)
    for _ in range(500):
        if hub.watcher_count > before:
            return socket
        await asyncio.sleep(0.01)
    raise AssertionError("the subscription never registered")


async def next_payload(socket: GraphQLSocket, field: str) -> dict:
    message = await socket.receive()
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"][field]


async def test_rest_shows_the_place_of_pending_jobs_from_the_submit_on(client: httpx.AsyncClient) -> None:
    first, second = await submit(client), await submit(client)

    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    assert (await rest_job(client, second["id"]))["queue_position"] == 2
    listed = (await client.get("/api/v1/restoration/jobs")).json()["jobs"]
    assert {job["id"]: job["queue_position"] for job in listed} == {first["id"]: 1, second["id"]: 2}


async def test_graphql_shows_the_place_of_a_pending_job(client: httpx.AsyncClient) -> None:
    await submit(client)
    second = await submit(client)

    job = (await graphql(client, JOB, id=second["id"])).json()["data"]["job"]

    assert job["queuePosition"] == 2


async def test_the_eta_is_null_before_any_job_was_measured(client: httpx.AsyncClient) -> None:
    job = await submit(client)

    assert job["eta_seconds"] is None
    assert (await graphql(client, JOB, id=job["id"])).json()["data"]["job"]["etaSeconds"] is None


async def test_a_completed_job_has_neither_place_nor_eta(client: httpx.AsyncClient, worker: InProcessWorker) -> None:
    job = await submit(client)
    await worker.drain()

    done = await rest_job(client, job["id"])

    assert done["status"] == "completed"
    assert (done["queue_position"], done["eta_seconds"]) == (None, None)


async def test_once_jobs_were_measured_pending_jobs_have_a_positive_eta_growing_with_their_place(
    client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(service_time=SERVICE_TIME)
    await submit(client), await submit(client)
    await worker.drain()
    first, second = await submit(client), await submit(client)

    rest = [await rest_job(client, job["id"]) for job in (first, second)]
    query = (await graphql(client, JOB, id=second["id"])).json()["data"]["job"]

    assert [job["queue_position"] for job in rest] == [1, 2]
    assert 0 < rest[0]["eta_seconds"] < rest[1]["eta_seconds"], rest
    assert query["etaSeconds"] is not None
    assert query["etaSeconds"] > 0


async def test_a_job_updated_subscriber_hears_its_new_place_when_a_job_ahead_starts(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, queued: RedisHuey, user: str
) -> None:
    ahead, mine = await submit(client), await submit(client)
    socket = await subscribed(api, tokens.issue(sub=user), JOB_UPDATED, {"id": mine["id"]})

    first = await next_payload(socket, "jobUpdated")
    assert await start_next(queued) == ahead["id"]
    moved = await next_payload(socket, "jobUpdated")
    await socket.close()

    assert (first["status"], first["queuePosition"]) == ("PENDING", 2)
    assert (moved["id"], moved["status"], moved["queuePosition"]) == (mine["id"], "PENDING", 1)


async def test_a_jobs_updated_subscriber_hears_the_new_places_of_its_pending_jobs(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, queued: RedisHuey, user: str
) -> None:
    socket = await subscribed(api, tokens.issue(sub=user), JOBS_UPDATED, {})
    ahead, mine = await submit(client), await submit(client)
    announced = [await next_payload(socket, "jobsUpdated") for _ in range(2)]

    await start_next(queued)
    moved = await next_payload(socket, "jobsUpdated")
    await socket.close()

    assert {job["id"]: job["queuePosition"] for job in announced} == {ahead["id"]: 1, mine["id"]: 2}
    assert (moved["id"], moved["status"], moved["queuePosition"]) == (mine["id"], "PENDING", 1)


async def test_with_redis_unreachable_a_read_shows_nulls_not_an_error() -> None:
    dead = JobQueue(create_huey(f"redis://127.0.0.1:{free_port()}/0", blocking=False))
    now = datetime.now(UTC)
    view = JobView(
        id=uuid.uuid4(),
        status=JobStatus.PENDING,
        denoise=0.5,
        original_image_url="https://example.test/originals/x.jpg",
        processed_image_url=None,
        error_message=None,
        error_code=None,
        retryable=None,
        progress=None,
        created_at=now,
        updated_at=now,
        queue_position=3,
        eta_seconds=12.0,
    )

    [read] = await placed([view], dead)

    assert (read.queue_position, read.eta_seconds) == (None, None)


async def test_cancelling_a_pending_job_moves_the_jobs_behind_it_up(client: httpx.AsyncClient) -> None:
    first, second, third = await submit(client), await submit(client), await submit(client)

    cancelled = await client.post(f"/api/v1/restoration/jobs/{first['id']}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["queue_position"] is None
    assert [(await rest_job(client, job["id"]))["queue_position"] for job in (second, third)] == [1, 2]
