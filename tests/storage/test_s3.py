"""S3Storage against a real S3-compatible server (moto on loopback)."""

import calendar
import time
import uuid
from collections.abc import Awaitable, Callable
from tempfile import SpooledTemporaryFile
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from botocore.exceptions import BotoCoreError
from botocore.stub import Stubber

from storage.errors import ObjectNotFound, StorageConfigError, StorageUnavailable
from storage.s3 import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    RETRY_TOTAL_MAX_ATTEMPTS,
    S3Storage,
    make_s3_client,
)
from tests.fixtures.s3 import S3ServerHandle

# A guard against hanging on a dead endpoint, not a benchmark.
OUTAGE_FAILS_WITHIN_SECONDS = 10.0


def new_key(suffix: str = ".jpg") -> str:
    return f"originals/{uuid.uuid4()}{suffix}"


def storage_for(s3_server: S3ServerHandle, *, bucket: str, secret: str | None = None) -> S3Storage:
    client = make_s3_client(
        region=s3_server.region,
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=secret or s3_server.secret_access_key,
    )
    return S3Storage(client=client, bucket=bucket)


@pytest.mark.parametrize("size", [100, 300_000], ids=["in-memory", "rolled-over-to-disk"])
async def test_put_file_from_spooled_temporary_file_round_trips(s3_storage: S3Storage, size: int) -> None:
    content = bytes(range(256)) * (size // 256 + 1)
    key = new_key()
    with SpooledTemporaryFile(max_size=1024) as spooled:
        spooled.write(content)
        spooled.seek(0)
        await s3_storage.put_file(key, spooled, content_type="image/jpeg")

    assert await s3_storage.get_bytes(key) == content


async def test_put_file_uploads_from_the_current_position(s3_storage: S3Storage) -> None:
    key = new_key()
    with SpooledTemporaryFile() as spooled:
        spooled.write(b"skipped|stored")
        spooled.seek(len(b"skipped|"))
        await s3_storage.put_file(key, spooled, content_type="image/jpeg")

    assert await s3_storage.get_bytes(key) == b"stored"


async def test_put_file_stores_the_content_type(s3_storage: S3Storage, s3_server: S3ServerHandle) -> None:
    key = new_key(".webp")
    with SpooledTemporaryFile() as spooled:
        spooled.write(b"RIFF....WEBP")
        spooled.seek(0)
        await s3_storage.put_file(key, spooled, content_type="image/webp")

    assert s3_server.client.head_object(Bucket=s3_server.bucket, Key=key)["ContentType"] == "image/webp"


async def test_put_bytes_stores_content_and_content_type(s3_storage: S3Storage, s3_server: S3ServerHandle) -> None:
    key = new_key(".png")
    await s3_storage.put_bytes(key, b"\x89PNG", content_type="image/png")

    stored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=key)
    assert (stored["Body"].read(), stored["ContentType"]) == (b"\x89PNG", "image/png")


async def test_exists_is_true_after_put_and_false_after_delete(s3_storage: S3Storage) -> None:
    key = new_key()
    await s3_storage.put_bytes(key, b"x", content_type="image/jpeg")
    assert await s3_storage.exists(key)

    await s3_storage.delete(key)
    assert not await s3_storage.exists(key)


async def test_delete_of_a_missing_key_is_not_an_error(s3_storage: S3Storage) -> None:
    await s3_storage.delete(new_key())


async def test_get_of_a_missing_key_raises_object_not_found(s3_storage: S3Storage) -> None:
    key = new_key()
    with pytest.raises(ObjectNotFound) as caught:
        await s3_storage.get_bytes(key)
    assert caught.value.key == key


async def test_ping_returns_when_the_bucket_answers(s3_storage: S3Storage) -> None:
    await s3_storage.ping()


async def test_ping_raises_unavailable_when_the_bucket_is_missing(s3_server: S3ServerHandle) -> None:
    with pytest.raises(StorageUnavailable, match="no-such-bucket"):
        await storage_for(s3_server, bucket="no-such-bucket").ping()


async def test_get_from_a_missing_bucket_is_unavailable_not_not_found(s3_server: S3ServerHandle) -> None:
    with pytest.raises(StorageUnavailable):
        await storage_for(s3_server, bucket="no-such-bucket").get_bytes(new_key())


async def _put_file(storage: S3Storage) -> None:
    with SpooledTemporaryFile() as spooled:
        spooled.write(b"x")
        spooled.seek(0)
        await storage.put_file(new_key(), spooled, content_type="image/jpeg")


OPERATIONS: dict[str, Callable[[S3Storage], Awaitable[object]]] = {
    "put_file": _put_file,
    "put_bytes": lambda storage: storage.put_bytes(new_key(), b"x", content_type="image/jpeg"),
    "get_bytes": lambda storage: storage.get_bytes(new_key()),
    "exists": lambda storage: storage.exists(new_key()),
    "delete": lambda storage: storage.delete(new_key()),
    "ping": lambda storage: storage.ping(),
}


@pytest.mark.parametrize("operation", OPERATIONS.keys())
async def test_calls_raise_unavailable_quickly_while_the_server_is_down(
    s3_storage: S3Storage, s3_server: S3ServerHandle, operation: str
) -> None:
    await s3_storage.ping()  # leaves a pooled connection behind, as in a running service
    s3_server.stop()

    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await OPERATIONS[operation](s3_storage)
    assert time.monotonic() - started < OUTAGE_FAILS_WITHIN_SECONDS


async def test_calls_work_again_after_the_server_restarts(s3_storage: S3Storage, s3_server: S3ServerHandle) -> None:
    key = new_key()
    await s3_storage.put_bytes(key, b"kept", content_type="image/jpeg")
    s3_server.stop()
    with pytest.raises(StorageUnavailable):
        await s3_storage.ping()

    s3_server.start()

    await s3_storage.ping()
    assert await s3_storage.get_bytes(key) == b"kept"


async def test_unavailable_message_names_bucket_and_endpoint_but_no_secret(
    s3_server: S3ServerHandle,
) -> None:
    storage = storage_for(s3_server, bucket=s3_server.bucket, secret="do-not-leak-me")
    s3_server.stop()
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.ping()
    finally:
        s3_server.start()

    message = str(caught.value)
    assert s3_server.bucket in message
    assert s3_server.endpoint_url in message
    assert "do-not-leak-me" not in message
    assert isinstance(caught.value.__cause__, BotoCoreError)


@pytest.mark.parametrize(("code", "status"), [("AccessDenied", 403), ("InternalError", 500), ("SlowDown", 503)])
async def test_refusals_and_server_errors_are_unavailable(s3_server: S3ServerHandle, code: str, status: int) -> None:
    # moto neither checks permissions nor fails on demand, so the reply is stubbed.
    storage = storage_for(s3_server, bucket=s3_server.bucket)
    with Stubber(storage._client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(StorageUnavailable, match=code):
            await storage.get_bytes(new_key())


async def test_presigned_url_fetches_the_object_over_plain_http(s3_storage: S3Storage) -> None:
    key = new_key()
    await s3_storage.put_bytes(key, b"jpeg bytes", content_type="image/jpeg")

    async with httpx.AsyncClient() as http:
        reply = await http.get(s3_storage.presigned_get_url(key, ttl_seconds=60))

    assert (reply.status_code, reply.content) == (200, b"jpeg bytes")


async def test_presigned_url_for_a_key_with_odd_characters_fetches_it(s3_storage: S3Storage) -> None:
    key = "originals/a b+ü?#%&.jpg"
    await s3_storage.put_bytes(key, b"odd", content_type="image/jpeg")

    url = s3_storage.presigned_get_url(key, ttl_seconds=60)
    async with httpx.AsyncClient() as http:
        reply = await http.get(url)

    assert unquote(urlsplit(url).path) == f"/restoration-test/{key}"
    assert (reply.status_code, reply.content) == (200, b"odd")


def test_presigned_url_carries_its_ttl_and_signing_time(s3_storage: S3Storage) -> None:
    # moto does not enforce presigned expiry, so the signed parameters are checked instead.
    query = parse_qs(urlsplit(s3_storage.presigned_get_url(new_key(), ttl_seconds=90)).query)

    signed_at = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["90"]
    assert abs(signed_at - time.time()) < 60
    assert query["X-Amz-Signature"][0]


def test_client_fails_fast_with_sigv4_and_path_style_for_custom_endpoints() -> None:
    config = make_s3_client(
        region="us-east-1", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b"
    ).meta.config

    assert (config.signature_version, config.s3) == ("s3v4", {"addressing_style": "path"})
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    assert config.retries == {"total_max_attempts": RETRY_TOTAL_MAX_ATTEMPTS, "mode": "standard"}


def test_access_key_without_secret_is_refused() -> None:
    with pytest.raises(StorageConfigError):
        make_s3_client(region=None, endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key=None)
