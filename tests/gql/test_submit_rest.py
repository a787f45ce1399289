"""POST /api/v1/restoration/restore: what is accepted, what is refused, and what is left behind."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from huey import RedisHuey

from models.job import RestorationJob
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import RESTORE, post_photo


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey):
    s3_server.reset()
    async with api.client(tokens.issue(sub="alice")) as client:
        yield client


@pytest.mark.parametrize(
    ("data", "extension"),
    images.accepted_formats(),
    ids=images.FORMAT_IDS,
)
async def test_accepted_photo_is_stored_recorded_and_queued(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, data: bytes, extension: str
) -> None:
    response = await post_photo(client, data, name="../../etc/passwd ümlaut.bin", content_type="text/plain")

    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/api/v1/restoration/jobs/{job['id']}"
    assert job["status"] == "pending"
    assert job["processed_image_url"] is None
    assert job["error_message"] is None
    assert job["progress"] is None
    assert s3_server.keys("originals/") == [f"originals/{job['id']}.{extension}"]
    assert f"/originals/{job['id']}.{extension}" in job["original_image_url"]
    row = await RestorationJob.get(id=job["id"])
    assert row.user_id == "alice"
    assert [task.args for task in [queued.dequeue()]] == [(job["id"],)]


async def test_stored_original_is_byte_for_byte_the_upload(client: httpx.AsyncClient, s3_server: S3ServerHandle):
    data = images.jpeg_bytes(exif_orientation=6)
    job = (await post_photo(client, data)).json()
    stored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=f"originals/{job['id']}.jpg")["Body"].read()
    assert stored == data


async def test_denoise_defaults_to_the_workflows_value(client: httpx.AsyncClient) -> None:
    job = (await post_photo(client, images.jpeg_bytes())).json()
    assert job["denoise"] == 1.0


async def test_denoise_is_recorded(client: httpx.AsyncClient) -> None:
    job = (await post_photo(client, images.jpeg_bytes(), denoise="0.35")).json()
    assert job["denoise"] == 0.35


@pytest.mark.parametrize("denoise", ["-0.1", "1.1", "NaN", "inf", "abc", ""])
async def test_invalid_denoise_is_422_and_leaves_nothing(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, denoise: str
) -> None:
    response = await post_photo(client, images.jpeg_bytes(), denoise=denoise)
    assert response.status_code == 422
    assert "denoise" in response.json()["detail"]
    assert s3_server.keys("originals/") == []
    assert queued.pending_count() == 0


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", images.truncated(images.jpeg_bytes(256, 256)), images.other_format_bytes("GIF")],
    ids=["empty", "text", "truncated-jpeg", "gif"],
)
async def test_content_that_is_not_a_supported_image_is_415(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, data: bytes
) -> None:
    response = await post_photo(client, data, name="photo.jpg", content_type="image/jpeg")
    assert response.status_code == 415
    assert response.json()["detail"]
    assert s3_server.keys("originals/") == []
    assert queued.pending_count() == 0


async def test_pixel_bomb_is_413(client: httpx.AsyncClient, s3_server: S3ServerHandle) -> None:
    response = await post_photo(client, images.png_bomb(), name="bomb.png", content_type="image/png")
    assert response.status_code == 413
    assert s3_server.keys("originals/") == []


async def test_file_over_the_limit_is_413(client: httpx.AsyncClient, api: ApiServer, s3_server: S3ServerHandle):
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    data = images.jpeg_bytes() + b"\0" * (limit + 1 - len(images.jpeg_bytes()))
    response = await post_photo(client, data)
    assert response.status_code == 413
    assert s3_server.keys("originals/") == []


async def test_file_exactly_at_the_limit_is_accepted(client: httpx.AsyncClient, api: ApiServer) -> None:
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    head = images.jpeg_bytes()
    response = await post_photo(client, head + b"\0" * (limit - len(head)))
    assert response.status_code == 202


async def test_missing_file_field_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(RESTORE, files={"other": ("a.jpg", images.jpeg_bytes(), "image/jpeg")})
    assert response.status_code == 422


async def test_two_files_are_422(client: httpx.AsyncClient, s3_server: S3ServerHandle) -> None:
    photo = images.jpeg_bytes()
    response = await client.post(
        RESTORE, files=[("file", ("a.jpg", photo, "image/jpeg")), ("file", ("b.jpg", photo, "image/jpeg"))]
    )
    assert response.status_code == 422
    assert s3_server.keys("originals/") == []


async def test_body_that_is_not_multipart_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(RESTORE, json={"file": "x"})
    assert response.status_code == 415


async def test_malformed_multipart_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(RESTORE, content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400


async def test_missing_token_is_401_with_bearer_challenge(api: ApiServer, s3_server: S3ServerHandle) -> None:
    async with api.client() as anonymous:
        response = await post_photo(anonymous, images.jpeg_bytes())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert s3_server.keys("originals/") == []


async def test_invalid_token_is_401(api: ApiServer, tokens: TokenFactory) -> None:
    async with api.client(tokens.issue(sub="alice", aud="https://someone-else")) as client:
        response = await post_photo(client, images.jpeg_bytes())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_storage_outage_is_503_with_retry_after(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    s3_server.stop()
    try:
        response = await post_photo(client, images.jpeg_bytes())
    finally:
        s3_server.start()
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert queued.pending_count() == 0


async def test_queue_outage_is_503_and_undoes_the_job_and_the_object(
    client: httpx.AsyncClient, api: ApiServer, s3_server: S3ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.queue import JobQueue, create_huey

    services = api.app.state.services  # type: ignore[attr-defined]
    before = await RestorationJob.all().count()
    monkeypatch.setattr(services, "queue", JobQueue(create_huey("redis://127.0.0.1:1/0")))
    response = await post_photo(client, images.jpeg_bytes())
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert await RestorationJob.all().count() == before
    assert s3_server.keys("originals/") == []


async def test_database_outage_is_503_and_leaves_no_object(
    client: httpx.AsyncClient, pg_proxy, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    await pg_proxy.cut()
    try:
        response = await post_photo(client, images.jpeg_bytes())
    finally:
        await pg_proxy.restore()
    assert response.status_code == 503
    assert response.json()["detail"].startswith("database unavailable")
    assert s3_server.keys("originals/") == []
    assert queued.pending_count() == 0


async def test_api_serves_again_after_the_database_returns(client: httpx.AsyncClient, pg_proxy) -> None:
    await pg_proxy.cut()
    await pg_proxy.restore()
    response = await post_photo(client, images.jpeg_bytes())
    assert response.status_code == 202


async def raw_post(api: ApiServer, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request over a plain socket and return whatever the server answers."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        for chunk in body_chunks:
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


async def test_announced_body_over_the_limit_is_refused_before_it_is_read(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle
) -> None:
    s3_server.reset()
    head = (
        f"POST {RESTORE} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {tokens.issue(sub='alice')}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000000000\r\n\r\n"
    ).encode()
    answer = await raw_post(api, head, [])
    assert answer.startswith(b"HTTP/1.1 413")
    assert s3_server.keys("originals/") == []


async def test_streamed_body_past_the_limit_is_cut_off(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle
) -> None:
    s3_server.reset()
    limit = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    head = (
        f"POST {RESTORE} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {tokens.issue(sub='alice')}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    block = b"\0" * (4 * 1024 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(block), block)] * (limit // len(block) + 2)
    answer = await raw_post(api, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413")
    assert s3_server.keys("originals/") == []
