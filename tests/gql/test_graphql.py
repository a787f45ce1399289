"""GraphQL: the restoreImage multipart mutation, job queries and the error codes of the contract."""

from __future__ import annotations

import json

import httpx
import pytest
from huey import RedisHuey

from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import JOB_FIELDS, RESTORE_MUTATION, graphql, graphql_upload


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey):
    s3_server.reset()
    async with api.client(tokens.issue(sub="gina")) as client:
        yield client


@pytest.mark.parametrize(
    ("data", "extension"),
    images.accepted_formats(),
    ids=images.FORMAT_IDS,
)
async def test_restore_image_mutation_queues_a_pending_job(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, data: bytes, extension: str
) -> None:
    response = await graphql_upload(client, data, denoise=0.4)

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    job = body["data"]["restoreImage"]
    assert job["status"] == "PENDING"
    assert job["denoise"] == 0.4
    assert s3_server.keys("originals/") == [f"originals/{job['id']}.{extension}"]
    assert queued.dequeue().args == (job["id"],)


async def test_mutation_error_carries_the_contract_code(client: httpx.AsyncClient, s3_server: S3ServerHandle):
    response = await graphql_upload(client, b"not an image")
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert s3_server.keys("originals/") == []


async def test_out_of_range_denoise_is_bad_user_input(client: httpx.AsyncClient) -> None:
    response = await graphql_upload(client, images.jpeg_bytes(), denoise=1.5)
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_pixel_bomb_is_payload_too_large(client: httpx.AsyncClient) -> None:
    response = await graphql_upload(client, images.png_bomb())
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_storage_outage_is_service_unavailable(client: httpx.AsyncClient, s3_server: S3ServerHandle):
    s3_server.stop()
    try:
        response = await graphql_upload(client, images.jpeg_bytes())
    finally:
        s3_server.start()
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in json.dumps(response.json())


async def test_multipart_without_map_is_http_400(client: httpx.AsyncClient) -> None:
    operations = {"query": RESTORE_MUTATION, "variables": {"file": None}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations)},
        files={"0": ("a.jpg", images.jpeg_bytes(), "image/jpeg")},
    )
    assert response.status_code == 400


async def test_map_to_an_undeclared_variable_is_http_400(client: httpx.AsyncClient) -> None:
    operations = {"query": RESTORE_MUTATION, "variables": {"file": None}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.photo"]})},
        files={"0": ("a.jpg", images.jpeg_bytes(), "image/jpeg")},
    )
    assert response.status_code == 400


async def test_two_files_for_one_variable_is_http_400(client: httpx.AsyncClient, s3_server: S3ServerHandle):
    operations = {"query": RESTORE_MUTATION, "variables": {"file": None}}
    photo = images.jpeg_bytes()
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.file"], "1": ["variables.file"]}),
        },
        files=[("0", ("a.jpg", photo, "image/jpeg")), ("1", ("b.jpg", photo, "image/jpeg"))],
    )
    assert response.status_code == 400
    assert s3_server.keys("originals/") == []


async def test_operation_without_token_is_http_401(api: ApiServer) -> None:
    async with api.client() as anonymous:
        response = await graphql(anonymous, "{ jobs { edges { cursor } } }")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_upload_without_token_is_http_401(api: ApiServer, s3_server: S3ServerHandle) -> None:
    async with api.client() as anonymous:
        response = await graphql_upload(anonymous, images.jpeg_bytes())
    assert response.status_code == 401
    assert s3_server.keys("originals/") == []


async def test_graphiql_is_served_without_a_token(api: ApiServer) -> None:
    async with api.client() as anonymous:
        response = await anonymous.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_job_query_returns_the_callers_job(client: httpx.AsyncClient) -> None:
    created = (await graphql_upload(client, images.jpeg_bytes())).json()["data"]["restoreImage"]
    response = await graphql(client, f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", id=created["id"])
    assert response.json()["data"]["job"] == created
