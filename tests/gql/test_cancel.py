"""Cancelling a job over REST (`POST /jobs/{id}/cancel`) and GraphQL (`cancelJob`): what the
owner, a stranger and the watchers see. The worker's side is in tests/tasks/test_cancel.py."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from models import repository
from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from tasks.events import CHANNEL, JobEvent
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import graphql, post_photo
from tests.gql.test_jobs_updated import subscribe, updates_until
from tests.gql.ws import JOB_UPDATED, GraphQLSocket

JOBS = "/api/v1/restoration/jobs"
CANCEL_JOB = "mutation($id: ID!) { cancelJob(id: $id) { id status processedImageUrl errorMessage progress } }"


def cancel_url(job_id: str) -> str:
    return f"{JOBS}/{job_id}/cancel"


@pytest.fixture
def owner_id() -> str:
    return f"canceller-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def owner_token(tokens: TokenFactory, owner_id: str) -> str:
    return tokens.issue(sub=owner_id)


@pytest.fixture
async def owner(api: ApiServer, owner_token: str, s3_server: S3ServerHandle):
    s3_server.reset()
    async with api.client(owner_token) as client:
        yield client


@pytest.fixture
async def stranger(api: ApiServer, tokens: TokenFactory):
    async with api.client(tokens.issue(sub=f"stranger-{uuid.uuid4().hex[:8]}")) as client:
        yield client


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def finish(job_id: str, status: JobStatus) -> None:
    """Put the job in a finished state as its worker would have."""
    if status is JobStatus.COMPLETED:
        await RestorationJob.filter(id=job_id).update(status=status, processed_key=f"restored/{job_id}.png")
    elif status is JobStatus.FAILED:
        await RestorationJob.filter(id=job_id).update(
            status=status, error_message="boom", error_code=ErrorCode.COMFYUI_ERROR, retryable=False
        )
    else:
        await RestorationJob.filter(id=job_id).update(status=status)


def unsigned(job: dict) -> dict:
    """The job with its image URLs cut at the query: signatures are minted afresh on every read."""
    return {
        **job,
        **{name: job[name] and job[name].split("?")[0] for name in ("original_image_url", "processed_image_url")},
    }


# -- REST ------------------------------------------------------------------------------------------


async def test_a_pending_job_is_cancelled_at_once(owner: httpx.AsyncClient) -> None:
    job_id = await submit(owner)

    response = await owner.post(cancel_url(job_id))

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"]) == (job_id, "cancelled")
    assert (body["processed_image_url"], body["error_message"], body["error_code"], body["progress"]) == (
        None,
        None,
        None,
        None,
    )
    assert (await owner.get(f"{JOBS}/{job_id}")).json()["status"] == "cancelled"


async def test_a_processing_job_is_cancelled_too(owner: httpx.AsyncClient) -> None:
    job_id = await submit(owner)
    assert await repository.claim_job(job_id, worker_id="some-worker", lease_seconds=60) is not None

    response = await owner.post(cancel_url(job_id))

    assert response.status_code == 200
    assert response.json()["status"] in ("processing", "cancelled")
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.CANCELLED


async def test_the_original_is_kept(owner: httpx.AsyncClient, s3_server: S3ServerHandle) -> None:
    job_id = await submit(owner)

    await owner.post(cancel_url(job_id))

    assert s3_server.keys() == [f"originals/{job_id}.jpg"]
    original = (await owner.get(f"{JOBS}/{job_id}")).json()["original_image_url"]
    assert f"/originals/{job_id}.jpg" in original


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
async def test_a_finished_job_is_a_409_and_stays_unchanged(owner: httpx.AsyncClient, status: JobStatus) -> None:
    job_id = await submit(owner)
    await finish(job_id, status)
    before = (await owner.get(f"{JOBS}/{job_id}")).json()

    response = await owner.post(cancel_url(job_id))

    assert response.status_code == 409
    assert status.value in response.json()["detail"]
    after = (await owner.get(f"{JOBS}/{job_id}")).json()
    assert unsigned(after) == unsigned(before)
    assert after["status"] == status.value


async def test_someone_elses_job_is_a_404_and_stays_pending(
    owner: httpx.AsyncClient, stranger: httpx.AsyncClient
) -> None:
    job_id = await submit(owner)

    response = await stranger.post(cancel_url(job_id))

    assert response.status_code == 404
    assert response.json() == {"detail": "job not found"}
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.PENDING


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_a_missing_job_is_a_404(owner: httpx.AsyncClient, job_id: str) -> None:
    response = await owner.post(cancel_url(job_id))
    assert (response.status_code, response.json()) == (404, {"detail": "job not found"})


async def test_without_a_token_it_is_a_401(api: ApiServer) -> None:
    async with api.client() as anonymous:
        response = await anonymous.post(cancel_url(str(uuid.uuid4())))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_list_filter_finds_cancelled_jobs(owner: httpx.AsyncClient) -> None:
    cancelled, pending = await submit(owner), await submit(owner)
    await owner.post(cancel_url(cancelled))

    listed = (await owner.get(JOBS, params={"status": "cancelled"})).json()
    still_pending = (await owner.get(JOBS, params={"status": "pending"})).json()

    assert [job["id"] for job in listed["jobs"]] == [cancelled]
    assert [job["id"] for job in still_pending["jobs"]] == [pending]


async def test_cancels_are_counted_in_the_metrics(owner: httpx.AsyncClient) -> None:
    before = REGISTRY.get_sample_value("restoration_jobs_cancelled_total") or 0.0
    job_id = await submit(owner)
    await owner.post(cancel_url(job_id))
    await owner.post(cancel_url(job_id))  # a 409 cancels nothing
    assert REGISTRY.get_sample_value("restoration_jobs_cancelled_total") == before + 1


# -- GraphQL ---------------------------------------------------------------------------------------


async def test_cancel_job_mutation_cancels_a_pending_job(owner: httpx.AsyncClient) -> None:
    job_id = await submit(owner)

    body = (await graphql(owner, CANCEL_JOB, id=job_id)).json()

    assert "errors" not in body, body
    assert body["data"]["cancelJob"] == {
        "id": job_id,
        "status": "CANCELLED",
        "processedImageUrl": None,
        "errorMessage": None,
        "progress": None,
    }


async def test_cancel_job_of_a_finished_job_is_a_conflict(owner: httpx.AsyncClient) -> None:
    job_id = await submit(owner)
    await finish(job_id, JobStatus.COMPLETED)

    response = await graphql(owner, CANCEL_JOB, id=job_id)

    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "CONFLICT"
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.COMPLETED


async def test_cancel_job_of_someone_elses_job_is_not_found(
    owner: httpx.AsyncClient, stranger: httpx.AsyncClient
) -> None:
    job_id = await submit(owner)

    [error] = (await graphql(stranger, CANCEL_JOB, id=job_id)).json()["errors"]

    assert error["extensions"]["code"] == "NOT_FOUND"
    assert (await RestorationJob.get(id=job_id)).status == JobStatus.PENDING


async def test_the_jobs_query_filters_on_cancelled(owner: httpx.AsyncClient) -> None:
    cancelled, _pending = await submit(owner), await submit(owner)
    await graphql(owner, CANCEL_JOB, id=cancelled)

    body = (await graphql(owner, "{ jobs(status: CANCELLED) { edges { node { id status } } } }")).json()

    assert [edge["node"] for edge in body["data"]["jobs"]["edges"]] == [{"id": cancelled, "status": "CANCELLED"}]


async def test_a_job_updated_watcher_sees_cancelled_and_the_stream_completes(
    api: ApiServer, owner: httpx.AsyncClient, owner_token: str
) -> None:
    job_id = await submit(owner)
    socket = await GraphQLSocket.open(api.url)
    try:
        assert (await socket.init({"Authorization": f"Bearer {owner_token}"}))["type"] == "connection_ack"
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        first = await socket.receive()
        assert first["payload"]["data"]["jobUpdated"]["status"] == "PENDING"

        assert (await graphql(owner, CANCEL_JOB, id=job_id)).json()["data"]["cancelJob"]["status"] == "CANCELLED"

        payloads = await socket.results()  # returns on `complete`
    finally:
        await socket.close()
    assert [payload["data"]["jobUpdated"]["status"] for payload in payloads] == ["CANCELLED"]


async def test_a_jobs_updated_watcher_sees_the_cancel(
    api: ApiServer, owner: httpx.AsyncClient, owner_token: str
) -> None:
    job_id = await submit(owner)
    socket = await subscribe(api, owner_token)
    try:
        await owner.post(cancel_url(job_id))
        updates = await updates_until(socket, lambda seen: any(u["status"] == "CANCELLED" for u in seen))
    finally:
        await socket.close()
    assert [(u["id"], u["status"]) for u in updates] == [(job_id, "CANCELLED")]


async def test_a_late_progress_event_after_the_cancel_is_not_sent_to_jobs_updated(
    api: ApiServer, owner: httpx.AsyncClient, owner_token: str, redis_url: str
) -> None:
    """The worker's last progress (published on its own connection) may arrive after the API's
    CANCELLED: it is stale, and the watcher's next update is the next real change."""
    job_id, sentinel = await submit(owner), await submit(owner)
    claimed = await repository.claim_job(job_id, worker_id="some-worker", lease_seconds=60)
    assert claimed is not None
    stale = dataclasses.replace(JobEvent.of(claimed), progress=0.5)
    socket = await subscribe(api, owner_token)
    publisher = aioredis.Redis.from_url(redis_url)
    try:
        await owner.post(cancel_url(job_id))
        await publisher.publish(CHANNEL, stale.encode())
        await owner.post(cancel_url(sentinel))  # published after the stale event: arrives after it
        updates = await updates_until(socket, lambda seen: any(u["id"] == sentinel for u in seen))
    finally:
        await publisher.aclose()
        await socket.close()
    assert [(u["id"], u["status"]) for u in updates] == [(job_id, "CANCELLED"), (sentinel, "CANCELLED")]
