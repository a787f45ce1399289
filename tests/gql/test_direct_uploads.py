"""Direct uploads on the S3-compatible test server: the ticket, the PUT, the restore, and every
bad input leaving nothing behind (no object under `uploads/` or `originals/`, no job).

moto does not verify presigned signatures, so a PUT of another length than the ticket's reaches
the bucket here: that is the restore's own length check at work. The signature's coverage is
checked on the URL itself (its signed headers); `restoration dev`'s own PUT URLs, which verify
their signature and length, are tested against a real dev server (tests/system/e2e).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from huey import RedisHuey

from gql.direct_uploads import create_upload
from models.job import RestorationJob
from models.upload import UploadTicket
from tasks.upload_sweep import sweep_expired_uploads
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import graphql

UPLOADS = "/api/v1/restoration/uploads"
JOB_FIELDS = "id status denoise originalImageUrl"
CREATE_UPLOAD = (
    "mutation($size: Int!, $type: String) { createUpload(size: $size, contentType: $type)"
    " { id url method headers { name value } expiresAt } }"
)
RESTORE_UPLOAD = (
    f"mutation($id: ID!, $denoise: Float) {{ restoreUpload(uploadId: $id, denoise: $denoise) {{ {JOB_FIELDS} }} }}"
)


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey):
    s3_server.reset()
    async with api.client(tokens.issue(sub="alice")) as client:
        yield client


@pytest.fixture
async def bob(api: ApiServer, tokens: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(tokens.issue(sub="bob")) as client:
        yield client


async def new_ticket(client: httpx.AsyncClient, size: int, content_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"size": size}
    if content_type is not None:
        body["content_type"] = content_type
    response = await client.post(UPLOADS, json=body)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def put(ticket: dict[str, Any], data: bytes, *, headers: dict[str, str] | None = None) -> httpx.Response:
    """Send `data` to the ticket's URL the way a client does (no API token: the URL is signed)."""
    sent = dict(ticket["headers"]) if headers is None else headers
    async with httpx.AsyncClient(timeout=30) as plain:
        return await plain.request(ticket["method"], ticket["url"], content=data, headers=sent)


async def restore(client: httpx.AsyncClient, ticket_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"{UPLOADS}/{ticket_id}/restore", json=body or None)


async def staged_photo(client: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    ticket = await new_ticket(client, len(data))
    assert (await put(ticket, data)).status_code == 200
    return ticket


def signed_headers(url: str) -> list[str]:
    return parse_qs(urlparse(url).query)["X-Amz-SignedHeaders"][0].split(";")


async def assert_nothing_left(s3_server: S3ServerHandle, queued: RedisHuey, jobs_before: int) -> None:
    assert s3_server.keys("uploads/") == []
    assert s3_server.keys("originals/") == []
    assert await RestorationJob.all().count() == jobs_before
    assert queued.pending_count() == 0


# -- the ticket --------------------------------------------------------------------------------------


async def test_a_ticket_is_a_presigned_put_whose_signature_covers_length_and_type(
    client: httpx.AsyncClient, api: ApiServer
) -> None:
    issued_at = datetime.now(UTC)
    ticket = await new_ticket(client, 123_456, "image/jpeg")

    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Length": "123456", "Content-Type": "image/jpeg"}
    url = urlparse(ticket["url"])
    assert url.path.endswith(f"/uploads/{ticket['id']}")
    assert {"content-length", "content-type", "host"} <= set(signed_headers(ticket["url"]))
    ttl = api.app.state.services.upload_ttl_seconds  # type: ignore[attr-defined]
    assert parse_qs(url.query)["X-Amz-Expires"] == [str(ttl)]
    expires_at = datetime.fromisoformat(ticket["expires_at"])
    assert abs(expires_at - (issued_at + timedelta(seconds=ttl))) < timedelta(seconds=5)


async def test_a_ticket_without_a_content_type_signs_the_length_only(client: httpx.AsyncClient) -> None:
    ticket = await new_ticket(client, 1000)
    assert ticket["headers"] == {"Content-Length": "1000"}
    assert "content-length" in signed_headers(ticket["url"])
    assert "content-type" not in signed_headers(ticket["url"])


async def test_a_ticket_is_recorded_for_its_user(client: httpx.AsyncClient) -> None:
    ticket = await new_ticket(client, 1000, "image/png")
    row = await UploadTicket.get(id=ticket["id"])
    assert (row.user_id, row.size, row.content_type, row.used_at) == ("alice", 1000, "image/png", None)


async def test_a_size_over_the_limit_is_413_and_issues_no_ticket(client: httpx.AsyncClient, api: ApiServer) -> None:
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    before = await UploadTicket.all().count()
    response = await client.post(UPLOADS, json={"size": limit + 1})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]
    assert await UploadTicket.all().count() == before


async def test_a_size_exactly_at_the_limit_gets_a_ticket(client: httpx.AsyncClient, api: ApiServer) -> None:
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    assert (await client.post(UPLOADS, json={"size": limit})).status_code == 201


@pytest.mark.parametrize(
    "body",
    [{}, {"size": None}, {"size": 0}, {"size": -5}, {"size": 1.5}, {"size": "100"}, {"size": True}, {"size": [1]}],
    ids=["missing", "null", "zero", "negative", "fraction", "string", "boolean", "list"],
)
async def test_a_size_that_is_not_a_positive_integer_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    before = await UploadTicket.all().count()
    response = await client.post(UPLOADS, json=body)
    assert response.status_code == 422
    assert "size" in response.json()["detail"]
    assert await UploadTicket.all().count() == before


@pytest.mark.parametrize("content_type", ["image/jpeg\r\nx-amz-acl: public-read", "jpeg", "", 42])
async def test_a_content_type_that_is_not_a_media_type_is_422(client: httpx.AsyncClient, content_type: object) -> None:
    response = await client.post(UPLOADS, json={"size": 100, "content_type": content_type})
    assert response.status_code == 422
    assert "content_type" in response.json()["detail"]


@pytest.mark.parametrize("raw", [b"", b"not json", b"[100]"], ids=["empty", "not-json", "not-an-object"])
async def test_a_ticket_body_that_is_not_a_json_object_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(UPLOADS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


async def test_a_ticket_needs_a_token(api: ApiServer) -> None:
    async with api.client() as anonymous:
        response = await anonymous.post(UPLOADS, json={"size": 100})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


# -- the whole flow ------------------------------------------------------------------------------------


async def test_a_staged_photo_is_judged_copied_to_originals_and_queued(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    data = images.jpeg_bytes(640, 480, exif_orientation=6)
    ticket = await new_ticket(client, len(data), "image/jpeg")
    assert (await put(ticket, data)).status_code == 200
    assert s3_server.keys("uploads/") == [f"uploads/{ticket['id']}"]

    response = await restore(client, ticket["id"], denoise=0.3)

    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/restoration/jobs/{job['id']}"
    assert (job["status"], job["denoise"]) == ("pending", 0.3)
    assert f"/originals/{job['id']}.jpg" in job["original_image_url"]
    assert s3_server.keys("originals/") == [f"originals/{job['id']}.jpg"]
    stored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=f"originals/{job['id']}.jpg")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/jpeg"
    assert s3_server.keys("uploads/") == []
    assert (await RestorationJob.get(id=job["id"])).user_id == "alice"
    assert [queued.dequeue().args] == [(job["id"],)]


async def test_the_restore_body_is_optional_and_denoise_defaults_to_the_workflows(client: httpx.AsyncClient) -> None:
    ticket = await staged_photo(client, images.png_bytes())
    response = await client.post(f"{UPLOADS}/{ticket['id']}/restore")
    assert response.status_code == 202, response.text
    assert response.json()["denoise"] == 1.0


async def test_the_original_extension_comes_from_the_content(client: httpx.AsyncClient, s3_server: S3ServerHandle):
    data = images.webp_bytes()
    ticket = await new_ticket(client, len(data), "image/jpeg")  # a wrong declared type changes nothing
    assert (await put(ticket, data)).status_code == 200
    job = (await restore(client, ticket["id"])).json()
    assert s3_server.keys("originals/") == [f"originals/{job['id']}.webp"]


async def test_an_invalid_denoise_is_422_and_the_ticket_stays_usable(
    client: httpx.AsyncClient, s3_server: S3ServerHandle
) -> None:
    ticket = await staged_photo(client, images.jpeg_bytes())
    response = await restore(client, ticket["id"], denoise=1.5)
    assert response.status_code == 422
    assert "denoise" in response.json()["detail"]
    assert s3_server.keys("originals/") == []
    assert (await restore(client, ticket["id"], denoise=0.5)).status_code == 202


# -- bad input: each leaves nothing behind --------------------------------------------------------


@pytest.mark.parametrize("extra", [7, -7], ids=["longer", "shorter"])
async def test_a_staged_object_of_another_length_is_422_and_leaves_nothing(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, extra: int
) -> None:
    jobs_before = await RestorationJob.all().count()
    data = images.jpeg_bytes()
    ticket = await new_ticket(client, len(data))
    sent = data + b"\0" * extra if extra > 0 else data[:extra]
    # The client ignores the ticket's Content-Length (moto, unlike S3, stores it anyway).
    assert (await put(ticket, sent, headers={"Content-Length": str(len(sent))})).status_code == 200

    response = await restore(client, ticket["id"])

    assert response.status_code == 422
    assert str(len(data)) in response.json()["detail"]
    await assert_nothing_left(s3_server, queued, jobs_before)


@pytest.mark.parametrize(
    "data",
    [b"hello, not an image", images.truncated(images.jpeg_bytes(256, 256)), images.other_format_bytes("GIF")],
    ids=["text", "truncated-jpeg", "gif"],
)
async def test_non_image_bytes_are_415_and_the_staged_object_is_deleted(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, data: bytes
) -> None:
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, data)
    response = await restore(client, ticket["id"])
    assert response.status_code == 415
    assert response.json()["detail"]
    await assert_nothing_left(s3_server, queued, jobs_before)


async def test_a_pixel_bomb_is_413_and_the_staged_object_is_deleted(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, images.png_bomb())
    assert (await restore(client, ticket["id"])).status_code == 413
    await assert_nothing_left(s3_server, queued, jobs_before)


async def test_a_refused_photo_uses_the_ticket_up(client: httpx.AsyncClient, s3_server: S3ServerHandle) -> None:
    ticket = await staged_photo(client, b"not an image")
    assert (await restore(client, ticket["id"])).status_code == 415
    assert (await put(ticket, b"not an image")).status_code == 200  # the URL itself is still signed
    assert (await restore(client, ticket["id"])).status_code == 404


async def test_another_users_ticket_is_404_and_stays_its_owners(
    client: httpx.AsyncClient, bob: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, images.jpeg_bytes())

    response = await restore(bob, ticket["id"])

    assert response.status_code == 404
    assert s3_server.keys("originals/") == []
    assert await RestorationJob.all().count() == jobs_before
    assert (await restore(client, ticket["id"])).status_code == 202


async def test_a_restore_before_the_put_is_409_and_the_ticket_stays_usable(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    jobs_before = await RestorationJob.all().count()
    data = images.jpeg_bytes()
    ticket = await new_ticket(client, len(data))

    response = await restore(client, ticket["id"])

    assert response.status_code == 409
    assert response.json()["detail"]
    await assert_nothing_left(s3_server, queued, jobs_before)
    assert (await put(ticket, data)).status_code == 200
    assert (await restore(client, ticket["id"])).status_code == 202


async def test_a_second_restore_of_one_ticket_is_404(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    ticket = await staged_photo(client, images.jpeg_bytes())
    first = await restore(client, ticket["id"])
    assert first.status_code == 202

    second = await restore(client, ticket["id"])

    assert second.status_code == 404
    assert s3_server.keys("originals/") == [f"originals/{first.json()['id']}.jpg"]
    assert queued.pending_count() == 1


async def test_an_expired_ticket_is_404_and_leaves_nothing(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, images.jpeg_bytes())
    await UploadTicket.filter(id=ticket["id"]).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    response = await restore(client, ticket["id"])

    assert response.status_code == 404
    assert s3_server.keys("originals/") == []
    assert await RestorationJob.all().count() == jobs_before


@pytest.mark.parametrize("upload_id", ["not-a-uuid", "0b8f5d6e-3c2a-4f1e-9a7b-5d4c3b2a1f0e"])
async def test_an_unknown_upload_is_404(client: httpx.AsyncClient, upload_id: str) -> None:
    response = await restore(client, upload_id)
    assert response.status_code == 404
    assert response.json()["detail"]


async def test_a_queue_outage_is_503_and_the_same_restore_works_afterwards(
    client: httpx.AsyncClient, api: ApiServer, s3_server: S3ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.queue import JobQueue, create_huey

    services = api.app.state.services  # type: ignore[attr-defined]
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, images.jpeg_bytes())
    with monkeypatch.context() as patched:
        patched.setattr(services, "queue", JobQueue(create_huey("redis://127.0.0.1:1/0")))
        response = await restore(client, ticket["id"])
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert s3_server.keys("originals/") == []
    assert await RestorationJob.all().count() == jobs_before
    assert s3_server.keys("uploads/") == [f"uploads/{ticket['id']}"]  # kept for the retry

    assert (await restore(client, ticket["id"])).status_code == 202
    assert s3_server.keys("uploads/") == []


# -- expiry: the sweep ----------------------------------------------------------------------------------


async def test_the_sweep_removes_expired_tickets_and_their_staged_objects(
    client: httpx.AsyncClient, api: ApiServer, s3_server: S3ServerHandle
) -> None:
    services = api.app.state.services  # type: ignore[attr-defined]
    expired = await staged_photo(client, images.jpeg_bytes())
    never_sent = await new_ticket(client, 100)
    live = await staged_photo(client, images.jpeg_bytes())
    past = datetime.now(UTC) - timedelta(seconds=1)
    await UploadTicket.filter(id__in=[expired["id"], never_sent["id"]]).update(expires_at=past)

    removed = await sweep_expired_uploads(storage=services.storage)

    assert removed >= 2
    assert s3_server.keys("uploads/") == [f"uploads/{live['id']}"]
    assert not await UploadTicket.filter(id__in=[expired["id"], never_sent["id"]]).exists()
    assert await UploadTicket.filter(id=live["id"]).exists()


async def test_tickets_expire_after_the_configured_ttl(client: httpx.AsyncClient, api: ApiServer) -> None:
    services = api.app.state.services  # type: ignore[attr-defined]
    before = datetime.now(UTC)
    view = await create_upload(services=_with_ttl(services, 7), user_id="alice", size=10)
    after = datetime.now(UTC)
    assert parse_qs(urlparse(view.url).query)["X-Amz-Expires"] == ["7"]
    row = await UploadTicket.get(id=view.id)
    # Seven seconds from its issue (to the second, as the signed URL counts), however slow the call.
    assert before + timedelta(seconds=6) <= row.expires_at <= after + timedelta(seconds=7)


def _with_ttl(services: Any, ttl: int) -> Any:
    import dataclasses

    return dataclasses.replace(services, upload_ttl_seconds=ttl)


# -- GraphQL ---------------------------------------------------------------------------------------------


def _code(response: httpx.Response) -> str:
    body = response.json()
    assert response.status_code == 200
    assert body.get("data") is None
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def test_graphql_create_upload_and_restore_upload(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    data = images.jpeg_bytes()
    created = (await graphql(client, CREATE_UPLOAD, size=len(data), type="image/jpeg")).json()
    ticket = created["data"]["createUpload"]
    assert ticket["method"] == "PUT"
    headers = {header["name"]: header["value"] for header in ticket["headers"]}
    assert headers == {"Content-Length": str(len(data)), "Content-Type": "image/jpeg"}
    assert {"content-length", "content-type"} <= set(signed_headers(ticket["url"]))
    assert (await put({**ticket, "headers": headers}, data)).status_code == 200

    restored = (await graphql(client, RESTORE_UPLOAD, id=ticket["id"], denoise=0.4)).json()

    job = restored["data"]["restoreUpload"]
    assert (job["status"], job["denoise"]) == ("PENDING", 0.4)
    assert s3_server.keys("originals/") == [f"originals/{job['id']}.jpg"]
    assert s3_server.keys("uploads/") == []
    assert [queued.dequeue().args] == [(job["id"],)]


async def test_graphql_size_over_the_limit_is_payload_too_large(client: httpx.AsyncClient, api: ApiServer) -> None:
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    assert _code(await graphql(client, CREATE_UPLOAD, size=limit + 1)) == "PAYLOAD_TOO_LARGE"


async def test_graphql_non_positive_size_is_bad_user_input(client: httpx.AsyncClient) -> None:
    assert _code(await graphql(client, CREATE_UPLOAD, size=0)) == "BAD_USER_INPUT"


async def test_graphql_restore_before_the_put_is_conflict(client: httpx.AsyncClient) -> None:
    ticket = await new_ticket(client, 100)
    assert _code(await graphql(client, RESTORE_UPLOAD, id=ticket["id"])) == "CONFLICT"


async def test_graphql_another_users_upload_is_not_found(client: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    ticket = await staged_photo(client, images.jpeg_bytes())
    assert _code(await graphql(bob, RESTORE_UPLOAD, id=ticket["id"])) == "NOT_FOUND"


async def test_graphql_non_image_is_unsupported_media_type_and_leaves_nothing(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    jobs_before = await RestorationJob.all().count()
    ticket = await staged_photo(client, b"<html>not a photo</html>")
    assert _code(await graphql(client, RESTORE_UPLOAD, id=ticket["id"])) == "UNSUPPORTED_MEDIA_TYPE"
    await assert_nothing_left(s3_server, queued, jobs_before)


async def test_graphql_wrong_length_is_bad_user_input(client: httpx.AsyncClient) -> None:
    data = images.jpeg_bytes()
    ticket = await new_ticket(client, len(data) + 1)
    assert (await put(ticket, data, headers={})).status_code == 200
    assert _code(await graphql(client, RESTORE_UPLOAD, id=ticket["id"])) == "BAD_USER_INPUT"
