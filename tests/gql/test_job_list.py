"""REST job list: GET /api/v1/restoration/jobs pages through the caller's jobs, newest first."""

from __future__ import annotations

import uuid

import httpx
import pytest

from models import repository
from models.job import JobStatus, RestorationJob
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer
from tests.gql.helpers import graphql

JOBS = "/api/v1/restoration/jobs"


def new_user() -> str:
    return f"lister-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def owner_id() -> str:
    return new_user()


@pytest.fixture
async def owner(api: ApiServer, tokens: TokenFactory, owner_id: str):
    async with api.client(tokens.issue(sub=owner_id)) as client:
        yield client


@pytest.fixture
async def stranger(api: ApiServer, tokens: TokenFactory):
    async with api.client(tokens.issue(sub=new_user())) as client:
        yield client


async def make_jobs(user_id: str, count: int) -> list[str]:
    """`count` jobs of `user_id`, created one after another; their ids, newest first."""
    ids = []
    for _ in range(count):
        job_id = uuid.uuid4()
        await repository.create_job(job_id=job_id, user_id=user_id, denoise=0.5, original_key=f"originals/{job_id}.jpg")
        ids.append(str(job_id))
    return ids[::-1]


async def test_25_jobs_come_in_three_pages_of_at_most_10_newest_first(owner: httpx.AsyncClient, owner_id: str) -> None:
    expected = await make_jobs(owner_id, 25)
    seen: list[str] = []
    pages = []
    cursor = None
    for _ in range(5):
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        response = await owner.get(JOBS, params=params)
        assert response.status_code == 200
        body = response.json()
        pages.append(len(body["jobs"]))
        seen += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [10, 10, 5]
    assert seen == expected


async def test_next_cursor_is_null_when_the_page_ends_exactly_at_the_last_job(
    owner: httpx.AsyncClient, owner_id: str
) -> None:
    expected = await make_jobs(owner_id, 20)
    first = (await owner.get(JOBS, params={"limit": "10"})).json()
    assert first["next_cursor"] is not None
    second = (await owner.get(JOBS, params={"limit": "10", "cursor": first["next_cursor"]})).json()
    assert [job["id"] for job in first["jobs"] + second["jobs"]] == expected
    assert second["next_cursor"] is None


async def test_default_limit_is_20(owner: httpx.AsyncClient, owner_id: str) -> None:
    await make_jobs(owner_id, 21)
    body = (await owner.get(JOBS)).json()
    assert len(body["jobs"]) == 20
    assert body["next_cursor"] is not None


async def test_no_jobs_is_an_empty_page_without_a_cursor(owner: httpx.AsyncClient) -> None:
    assert (await owner.get(JOBS)).json() == {"jobs": [], "next_cursor": None}


async def test_jobs_have_the_rest_job_shape(owner: httpx.AsyncClient, owner_id: str) -> None:
    [job_id] = await make_jobs(owner_id, 1)
    single = (await owner.get(f"{JOBS}/{job_id}")).json()
    [listed] = (await owner.get(JOBS)).json()["jobs"]
    # Presigned URLs are minted per read (their X-Amz-Date may tick between the two): same object.
    assert unsigned(listed) == unsigned(single)


def unsigned(job: dict[str, object]) -> dict[str, object]:
    return {
        name: value.split("?")[0] if name.endswith("_url") and isinstance(value, str) else value
        for name, value in job.items()
    }


async def test_status_filter_lists_only_jobs_with_that_status(owner: httpx.AsyncClient, owner_id: str) -> None:
    failed, pending_newer, pending_newest = (await make_jobs(owner_id, 3))[::-1]
    await RestorationJob.filter(id=failed).update(status=JobStatus.FAILED, error_message="x")
    pending = (await owner.get(JOBS, params={"status": "pending"})).json()
    assert [job["id"] for job in pending["jobs"]] == [pending_newest, pending_newer]
    only_failed = (await owner.get(JOBS, params={"status": "failed"})).json()
    assert [(job["id"], job["status"]) for job in only_failed["jobs"]] == [(failed, "failed")]
    assert (await owner.get(JOBS, params={"status": "completed"})).json() == {"jobs": [], "next_cursor": None}


async def test_status_filter_pages_with_the_same_cursors(owner: httpx.AsyncClient, owner_id: str) -> None:
    ids = await make_jobs(owner_id, 5)
    await RestorationJob.filter(id__in=ids[1::2]).update(status=JobStatus.FAILED, error_message="x")
    first = (await owner.get(JOBS, params={"status": "pending", "limit": "2"})).json()
    rest = (await owner.get(JOBS, params={"status": "pending", "limit": "2", "cursor": first["next_cursor"]})).json()
    assert [job["id"] for job in first["jobs"] + rest["jobs"]] == ids[0::2]
    assert rest["next_cursor"] is None


async def test_cancelled_is_an_accepted_status(owner: httpx.AsyncClient, owner_id: str) -> None:
    await make_jobs(owner_id, 2)
    response = await owner.get(JOBS, params={"status": "cancelled"})
    assert response.status_code == 200
    assert response.json() == {"jobs": [], "next_cursor": None}


async def test_another_users_jobs_are_never_listed(owner: httpx.AsyncClient, owner_id: str, stranger) -> None:
    mine = await make_jobs(owner_id, 3)
    for status in (None, "pending"):
        body = (await stranger.get(JOBS, params={"status": status} if status else {})).json()
        assert body == {"jobs": [], "next_cursor": None}
    assert [job["id"] for job in (await owner.get(JOBS)).json()["jobs"]] == mine


async def test_another_users_cursor_reveals_nothing(
    api: ApiServer, tokens: TokenFactory, owner: httpx.AsyncClient, owner_id: str
) -> None:
    other = new_user()
    await make_jobs(other, 3)
    mine = await make_jobs(owner_id, 2)
    async with api.client(tokens.issue(sub=other)) as theirs:
        cursor = (await theirs.get(JOBS, params={"limit": "1"})).json()["next_cursor"]
    assert cursor is not None
    body = (await owner.get(JOBS, params={"cursor": cursor})).json()
    # Their cursor only marks a moment: at most my own jobs older than it, never theirs.
    assert {job["id"] for job in body["jobs"]} <= set(mine)
    assert body["next_cursor"] is None


async def test_rest_and_graphql_list_the_same_jobs_in_the_same_order(owner: httpx.AsyncClient, owner_id: str) -> None:
    await make_jobs(owner_id, 4)
    rest = [job["id"] for job in (await owner.get(JOBS)).json()["jobs"]]
    edges = (await graphql(owner, "{ jobs { edges { node { id } } } }")).json()["data"]["jobs"]["edges"]
    assert rest == [edge["node"]["id"] for edge in edges]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": "PENDING"},
        {"status": ""},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "1.5"},
        {"limit": ""},
        {"limit": "١٠"},  # Arabic-Indic digits: int() would take them
        {"cursor": "garbage!"},
        {"cursor": ""},
        {"cursor": "bm90LWEtZGF0ZXxub3QtYS11dWlk"},  # base64 of "not-a-date|not-a-uuid"
    ],
)
async def test_bad_parameters_are_422_with_a_detail(owner: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await owner.get(JOBS, params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


async def test_the_list_needs_a_token(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        response = await anonymous.get(JOBS)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_openapi_documents_the_list(owner: httpx.AsyncClient) -> None:
    spec = (await owner.get("/openapi.json")).json()
    operation = spec["paths"][JOBS]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"status", "limit", "cursor"}
    assert {"200", "401", "422", "503"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/JobList"}
    fields = spec["components"]["schemas"]["JobList"]["properties"]
    assert set(fields) == {"jobs", "next_cursor"}
    status = next(parameter for parameter in operation["parameters"] if parameter["name"] == "status")
    assert status["schema"]["enum"] == ["pending", "processing", "completed", "failed", "cancelled"]
