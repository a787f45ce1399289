"""Idempotency keys on both submit paths, over REST and GraphQL: a retry with the same key and the
same content gets the original job back and stores and queues nothing; other content is 409."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import starlette.formparsers
from huey import RedisHuey
from starlette.datastructures import Headers

from gql.idempotency import Record, redis_key
from gql.uploads import HashedUpload, UploadParser
from models.job import RestorationJob
from settings import Settings
from storage.s3 import S3Storage
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer

RESTORE = "/api/v1/restoration/restore"
UPLOADS = "/api/v1/restoration/uploads"
REPLAYED = "Idempotent-Replayed"
RESTORE_IMAGE = (
    "mutation($file: Upload!, $denoise: Float, $key: String) {"
    " restoreImage(file: $file, denoise: $denoise, idempotencyKey: $key) { id status denoise } }"
)
RESTORE_UPLOAD = (
    "mutation($id: ID!, $denoise: Float, $key: String) {"
    " restoreUpload(uploadId: $id, denoise: $denoise, idempotencyKey: $key) { id status denoise } }"
)
PHOTO = images.jpeg_bytes(96, 64)
OTHER_PHOTO = images.jpeg_bytes(64, 96)


def new_key() -> str:
    return f"retry-{uuid.uuid4()}"


@pytest.fixture
def user() -> str:
    return f"idem-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey, user: str
) -> AsyncIterator[httpx.AsyncClient]:
    s3_server.reset()
    async with api.client(tokens.issue(sub=user)) as client:
        yield client


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def submit(
    client: httpx.AsyncClient,
    key: str | bytes | None,
    data: bytes = PHOTO,
    *,
    name: str = "photo.jpg",
    **fields: Any,
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(RESTORE, files={"file": (name, data, "image/jpeg")}, data=fields, headers=headers)


async def graphql_submit(
    client: httpx.AsyncClient, key: str | None, data: bytes = PHOTO, *, denoise: float | None = None
) -> dict[str, Any]:
    operations = {"query": RESTORE_IMAGE, "variables": {"file": None, "denoise": denoise, "key": key}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("photo.jpg", data, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_code(body: dict[str, Any]) -> str:
    assert body.get("data") is None, body
    code: str = body["errors"][0]["extensions"]["code"]
    return code


async def staged(client: httpx.AsyncClient, data: bytes = PHOTO) -> str:
    """A direct upload with `data` sent to its URL; its id."""
    ticket = (await client.post(UPLOADS, json={"size": len(data)})).json()
    async with httpx.AsyncClient(timeout=30) as plain:
        sent = await plain.request(ticket["method"], ticket["url"], content=data, headers=ticket["headers"])
    assert sent.status_code == 200
    upload_id: str = ticket["id"]
    return upload_id


async def restore_staged(client: httpx.AsyncClient, upload_id: str, key: str | None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(f"{UPLOADS}/{upload_id}/restore", json=body or None, headers=headers)


async def jobs_of(user: str) -> int:
    return await RestorationJob.filter(user_id=user).count()


async def record_of(redis_client: aioredis.Redis, user: str, key: str) -> Record | None:
    raw = await redis_client.get(redis_key(user, key))
    return Record.decode(raw) if raw is not None else None


# -- replays and conflicts ---------------------------------------------------------------------------


async def test_a_replay_answers_the_original_job_and_stores_and_queues_nothing(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, user: str
) -> None:
    key = new_key()
    first = await submit(client, key, denoise="0.3")
    assert first.status_code == 202
    assert REPLAYED not in first.headers

    again = await submit(client, key, denoise="0.3")

    assert again.status_code == 202
    assert again.headers[REPLAYED] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.json().keys() == first.json().keys()
    assert again.json()["id"] == first.json()["id"]
    assert s3_server.keys("originals/") == [f"originals/{first.json()['id']}.jpg"]
    assert queued.pending_count() == 1
    assert await jobs_of(user) == 1


async def test_the_same_key_with_other_bytes_is_409(client: httpx.AsyncClient, queued: RedisHuey, user: str) -> None:
    key = new_key()
    assert (await submit(client, key, PHOTO)).status_code == 202
    refused = await submit(client, key, OTHER_PHOTO)
    assert refused.status_code == 409
    assert "different file" in refused.json()["detail"]
    assert queued.pending_count() == 1
    assert await jobs_of(user) == 1


async def test_the_same_key_with_another_denoise_is_409(client: httpx.AsyncClient, user: str) -> None:
    key = new_key()
    assert (await submit(client, key, denoise="0.3")).status_code == 202
    refused = await submit(client, key, denoise="0.7")
    assert refused.status_code == 409
    assert "denoise" in refused.json()["detail"]
    assert await jobs_of(user) == 1


async def test_the_same_bytes_under_another_file_name_are_a_replay(client: httpx.AsyncClient) -> None:
    key = new_key()
    first = await submit(client, key, name="holiday.jpg")
    again = await submit(client, key, name="IMG_0001 (copy).jpeg")
    assert again.status_code == 202
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_keys_are_per_user(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, queued: RedisHuey
) -> None:
    key = new_key()
    mine = await submit(client, key)
    async with api.client(tokens.issue(sub=f"other-{uuid.uuid4().hex[:8]}")) as other:
        theirs = await submit(other, key)
    assert theirs.status_code == 202
    assert REPLAYED not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert queued.pending_count() == 2


async def test_rest_and_graphql_share_one_key_space(client: httpx.AsyncClient, queued: RedisHuey) -> None:
    key = new_key()
    job_id = (await submit(client, key)).json()["id"]

    replayed = await graphql_submit(client, key)
    conflicting = await graphql_submit(client, key, OTHER_PHOTO)

    assert replayed["data"]["restoreImage"]["id"] == job_id
    assert error_code(conflicting) == "CONFLICT"
    assert queued.pending_count() == 1


async def test_a_graphql_replay_answers_the_graphql_job(client: httpx.AsyncClient, queued: RedisHuey) -> None:
    key = new_key()
    first = await graphql_submit(client, key, denoise=0.4)
    again = await graphql_submit(client, key, denoise=0.4)
    assert again["data"]["restoreImage"] == first["data"]["restoreImage"]
    assert error_code(await graphql_submit(client, key, denoise=0.5)) == "CONFLICT"
    assert queued.pending_count() == 1


async def test_without_a_key_every_submit_is_a_new_job(client: httpx.AsyncClient, queued: RedisHuey) -> None:
    first, second = await submit(client, None), await submit(client, None)
    assert first.json()["id"] != second.json()["id"]
    assert REPLAYED not in second.headers
    assert queued.pending_count() == 2


# -- concurrency and failures ------------------------------------------------------------------------


async def test_twenty_concurrent_requests_with_one_key_make_exactly_one_job(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, user: str
) -> None:
    key = new_key()
    answers = await asyncio.gather(*(submit(client, key) for _ in range(20)))

    assert await jobs_of(user) == 1
    [job] = await RestorationJob.filter(user_id=user)
    assert {answer.status_code for answer in answers} <= {202, 409}
    accepted = [answer for answer in answers if answer.status_code == 202]
    assert accepted, [answer.text for answer in answers]
    assert {answer.json()["id"] for answer in accepted} == {str(job.id)}
    assert sum(REPLAYED not in answer.headers for answer in accepted) == 1  # the one that made it
    assert s3_server.keys("originals/") == [f"originals/{job.id}.jpg"]
    assert queued.pending_count() == 1


async def test_a_refused_submit_leaves_no_claim_behind(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, queued: RedisHuey, user: str
) -> None:
    key = new_key()
    refused = await submit(client, key, b"<html>not a photo</html>")
    assert refused.status_code == 415
    assert await record_of(redis_client, user, key) is None

    retried = await submit(client, key, PHOTO)  # other bytes than the refused try: no conflict
    assert retried.status_code == 202
    assert REPLAYED not in retried.headers
    assert queued.pending_count() == 1


async def test_a_submit_refused_while_the_database_is_down_can_be_retried_with_its_key(
    client: httpx.AsyncClient, pg_proxy, queued: RedisHuey
) -> None:
    key = new_key()
    await pg_proxy.cut()
    try:
        assert (await submit(client, key)).status_code == 503
    finally:
        await pg_proxy.restore()
    retried = await submit(client, key)
    assert retried.status_code == 202
    assert REPLAYED not in retried.headers
    assert queued.pending_count() == 1


@pytest.mark.parametrize(
    "key",
    ["", "has space", "tab\there", "x" * 256, "ümlaut".encode("latin-1")],
    ids=["empty", "space", "tab", "256-chars", "not-ascii"],
)
async def test_an_invalid_key_is_422_and_nothing_is_stored(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey, key: str | bytes
) -> None:
    refused = await submit(client, key)
    assert refused.status_code == 422
    assert "Idempotency-Key" in refused.json()["detail"]
    assert s3_server.keys("originals/") == []
    assert queued.pending_count() == 0


async def test_the_longest_key_of_visible_ascii_is_accepted(client: httpx.AsyncClient) -> None:
    key = "".join(chr(code) for code in range(0x21, 0x7F)) * 3  # every visible character, 282 long
    assert (await submit(client, key[:255])).status_code == 202


async def test_two_key_headers_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        RESTORE,
        files={"file": ("photo.jpg", PHOTO, "image/jpeg")},
        headers=[("Idempotency-Key", new_key()), ("Idempotency-Key", new_key())],
    )
    assert response.status_code == 422


@pytest.mark.parametrize("key", ["", "has space", "x" * 256])
async def test_an_invalid_graphql_key_is_bad_user_input(client: httpx.AsyncClient, key: str) -> None:
    assert error_code(await graphql_submit(client, key)) == "BAD_USER_INPUT"


def test_keys_are_remembered_for_idempotency_ttl_seconds(api: ApiServer, settings: Settings) -> None:
    assert Settings.model_fields["idempotency_ttl_seconds"].default == 86400
    assert api.app.state.services.idempotency.ttl_seconds == settings.idempotency_ttl_seconds  # type: ignore[attr-defined]


async def test_a_key_is_forgotten_after_its_ttl(
    api: ApiServer,
    client: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.app.state.services.idempotency, "ttl_seconds", 2)  # type: ignore[attr-defined]
    key = new_key()
    first = await submit(client, key)
    record = await record_of(redis_client, user, key)
    assert record is not None
    assert record.job_id == first.json()["id"]  # remembered...
    for _ in range(200):  # ...for 2 s at most
        if await record_of(redis_client, user, key) is None:
            break
        await asyncio.sleep(0.05)
    assert await record_of(redis_client, user, key) is None

    later = await submit(client, key)
    assert later.status_code == 202
    assert REPLAYED not in later.headers
    assert later.json()["id"] != first.json()["id"]


# -- the content hash ---------------------------------------------------------------------------------


async def test_the_parser_hashes_a_file_while_it_spools() -> None:
    data = os.urandom(3 * 1024 * 1024)  # many chunks, and past the 1 MiB the spool keeps in memory
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + data + b"\r\n--b--\r\n"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    parser = UploadParser(Headers({"content-type": "multipart/form-data; boundary=b"}), chunks())
    form = await parser.parse()
    upload = form["file"]
    assert isinstance(upload, HashedUpload)
    assert upload.file._rolled  # type: ignore[attr-defined]  # on disk, as a large upload is
    upload.file.close()  # the digest needs no read of the spool
    assert upload.digest == hashlib.sha256(data).hexdigest()


class CountingSpool(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
    """A multipart spool that counts the bytes read back from it."""

    bytes_read = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = super().read(*args)
        CountingSpool.bytes_read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = super().readinto(buffer)
        CountingSpool.bytes_read += count
        return count


async def rest_accepts(client: httpx.AsyncClient, key: str | None, data: bytes) -> bool:
    return (await submit(client, key, data)).status_code == 202


async def graphql_accepts(client: httpx.AsyncClient, key: str | None, data: bytes) -> bool:
    return "errors" not in await graphql_submit(client, key, data)


@pytest.mark.parametrize("accepts", [rest_accepts, graphql_accepts], ids=["rest", "graphql"])
async def test_a_keyed_submit_reads_the_spool_no_more_than_an_unkeyed_one(
    client: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    user: str,
    monkeypatch: pytest.MonkeyPatch,
    accepts: Callable[[httpx.AsyncClient, str | None, bytes], Awaitable[bool]],
) -> None:
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", CountingSpool)
    data = images.jpeg_bytes(1200, 900)

    CountingSpool.bytes_read = 0
    assert await accepts(client, None, data)
    unkeyed = CountingSpool.bytes_read
    CountingSpool.bytes_read = 0
    key = new_key()
    assert await accepts(client, key, data)
    keyed = CountingSpool.bytes_read

    assert unkeyed >= len(data)  # the spool was counted: judged and stored from it
    assert keyed == unkeyed
    record = await record_of(redis_client, user, key)
    assert record is not None
    assert record.digest == hashlib.sha256(data).hexdigest()


# -- direct uploads ----------------------------------------------------------------------------------


async def test_a_direct_upload_retried_after_its_ticket_was_spent_answers_the_original_job(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    key = new_key()
    upload_id = await staged(client)
    first = await restore_staged(client, upload_id, key, denoise=0.6)
    assert first.status_code == 202
    assert REPLAYED not in first.headers

    again = await restore_staged(client, upload_id, key, denoise=0.6)

    assert again.status_code == 202  # not the spent ticket's 404
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert s3_server.keys("originals/") == [f"originals/{first.json()['id']}.jpg"]
    assert s3_server.keys("uploads/") == []
    assert queued.pending_count() == 1
    assert (await restore_staged(client, upload_id, key, denoise=0.7)).status_code == 409


async def test_a_direct_upload_of_the_same_bytes_replays_a_multipart_submit(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    key = new_key()
    job_id = (await submit(client, key)).json()["id"]
    upload_id = await staged(client, PHOTO)

    again = await restore_staged(client, upload_id, key)

    assert again.status_code == 202
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == job_id
    assert s3_server.keys("uploads/") == []  # the replay's staged object is removed like any restore
    assert s3_server.keys("originals/") == [f"originals/{job_id}.jpg"]
    assert queued.pending_count() == 1


async def test_a_direct_upload_of_other_bytes_under_a_used_key_is_409(
    client: httpx.AsyncClient, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    key = new_key()
    assert (await submit(client, key)).status_code == 202
    upload_id = await staged(client, OTHER_PHOTO)
    refused = await restore_staged(client, upload_id, key)
    assert refused.status_code == 409
    assert s3_server.keys("uploads/") == []
    assert queued.pending_count() == 1


async def test_graphql_restore_upload_replays_with_its_key(client: httpx.AsyncClient, queued: RedisHuey) -> None:
    key = new_key()
    upload_id = await staged(client)
    query = {"query": RESTORE_UPLOAD, "variables": {"id": upload_id, "key": key}}
    first = (await client.post("/graphql", json=query)).json()
    again = (await client.post("/graphql", json=query)).json()
    assert again["data"]["restoreUpload"]["id"] == first["data"]["restoreUpload"]["id"]
    assert queued.pending_count() == 1


async def test_concurrent_restores_of_one_upload_with_one_key_make_one_job(
    client: httpx.AsyncClient, queued: RedisHuey, user: str
) -> None:
    key = new_key()
    upload_id = await staged(client)
    answers = await asyncio.gather(*(restore_staged(client, upload_id, key) for _ in range(8)))

    [job] = await RestorationJob.filter(user_id=user)
    assert {answer.status_code for answer in answers} <= {202, 409}
    assert {answer.json()["id"] for answer in answers if answer.status_code == 202} == {str(job.id)}
    assert queued.pending_count() == 1


async def test_a_direct_upload_is_downloaded_once_and_hashed_on_the_way(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads: list[str] = []
    original = S3Storage.download

    async def counted(self: S3Storage, key: str, fileobj: Any, *, if_match: str) -> int:
        downloads.append(key)
        return await original(self, key, fileobj, if_match=if_match)

    monkeypatch.setattr(S3Storage, "download", counted)
    key = new_key()
    upload_id = await staged(client)
    assert (await restore_staged(client, upload_id, key)).status_code == 202

    assert len(downloads) == 1
    record = await record_of(redis_client, user, key)
    assert record is not None
    assert record.digest == hashlib.sha256(PHOTO).hexdigest()
