"""Reading jobs: REST GET and GraphQL job/jobs show the caller's jobs and nobody else's."""

from __future__ import annotations

import uuid

import httpx
import pytest

from models.job import JobStatus, RestorationJob
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer
from tests.gql.helpers import graphql, post_photo

JOBS = """query($first: Int, $after: String, $status: JobStatus) {
  jobs(first: $first, after: $after, status: $status) {
    edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture
async def owner(api: ApiServer, tokens: TokenFactory, s3_server, queued):
    s3_server.reset()
    async with api.client(tokens.issue(sub=f"owner-{uuid.uuid4().hex[:6]}")) as client:
        yield client


@pytest.fixture
async def stranger(api: ApiServer, tokens: TokenFactory):
    async with api.client(tokens.issue(sub=f"stranger-{uuid.uuid4().hex[:6]}")) as client:
        yield client


async def submit(client: httpx.AsyncClient) -> dict:
    response = await post_photo(client, images.jpeg_bytes())
    assert response.status_code == 202
    return response.json()


async def test_owner_reads_the_job(owner: httpx.AsyncClient) -> None:
    job = await submit(owner)
    response = await owner.get(f"/api/v1/restoration/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == job["id"]


async def test_another_users_job_is_404_like_a_missing_one(owner: httpx.AsyncClient, stranger) -> None:
    job = await submit(owner)
    theirs = await stranger.get(f"/api/v1/restoration/jobs/{job['id']}")
    missing = await stranger.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


async def test_malformed_job_id_is_404(owner: httpx.AsyncClient) -> None:
    assert (await owner.get("/api/v1/restoration/jobs/not-a-uuid")).status_code == 404


async def test_graphql_job_of_another_user_is_null(owner: httpx.AsyncClient, stranger) -> None:
    job = await submit(owner)
    response = await graphql(stranger, "query($id: ID!) { job(id: $id) { id } }", id=job["id"])
    assert response.json() == {"data": {"job": None}}


async def test_jobs_lists_only_the_callers_jobs_newest_first(owner: httpx.AsyncClient, stranger) -> None:
    first, second = await submit(owner), await submit(owner)
    await submit(stranger)
    edges = (await graphql(owner, JOBS)).json()["data"]["jobs"]["edges"]
    assert [edge["node"]["id"] for edge in edges] == [second["id"], first["id"]]


async def test_jobs_pages_with_cursors(owner: httpx.AsyncClient) -> None:
    ids = [(await submit(owner))["id"] for _ in range(3)][::-1]
    page1 = (await graphql(owner, JOBS, first=2)).json()["data"]["jobs"]
    assert [edge["node"]["id"] for edge in page1["edges"]] == ids[:2]
    assert page1["pageInfo"]["hasNextPage"] is True
    page2 = (await graphql(owner, JOBS, first=2, after=page1["pageInfo"]["endCursor"])).json()["data"]["jobs"]
    assert [edge["node"]["id"] for edge in page2["edges"]] == ids[2:]
    assert page2["pageInfo"]["hasNextPage"] is False


async def test_jobs_filters_by_status(owner: httpx.AsyncClient) -> None:
    done, waiting = await submit(owner), await submit(owner)
    await RestorationJob.filter(id=done["id"]).update(status=JobStatus.FAILED, error_message="x")
    edges = (await graphql(owner, JOBS, status="PENDING")).json()["data"]["jobs"]["edges"]
    assert [edge["node"]["id"] for edge in edges] == [waiting["id"]]


async def test_a_cursor_from_another_users_job_reveals_nothing(owner: httpx.AsyncClient, stranger) -> None:
    await submit(stranger)
    theirs = (await graphql(stranger, JOBS, first=1)).json()["data"]["jobs"]["pageInfo"]["endCursor"]
    mine = await submit(owner)
    edges = (await graphql(owner, JOBS, after=theirs)).json()["data"]["jobs"]["edges"]
    assert all(edge["node"]["id"] == mine["id"] for edge in edges)


@pytest.mark.parametrize(("first", "after"), [(0, None), (101, None), (5, "garbage!")])
async def test_bad_paging_arguments_are_bad_user_input(owner: httpx.AsyncClient, first: int, after) -> None:
    [error] = (await graphql(owner, JOBS, first=first, after=after)).json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_reads_are_503_while_the_database_is_down(owner: httpx.AsyncClient, pg_proxy) -> None:
    await pg_proxy.cut()
    try:
        rest = await owner.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}")
        gql = await graphql(owner, JOBS)
    finally:
        await pg_proxy.restore()
    assert rest.status_code == 503
    assert "retry-after" in rest.headers
    assert gql.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "COMPLETED", "FAILED"])
async def test_status_filters_never_show_another_users_jobs(owner: httpx.AsyncClient, stranger, status: str) -> None:
    theirs = await submit(stranger)
    await RestorationJob.filter(id=theirs["id"]).update(status=JobStatus(status.lower()))
    edges = (await graphql(owner, JOBS, status=status)).json()["data"]["jobs"]["edges"]
    assert theirs["id"] not in [edge["node"]["id"] for edge in edges]
