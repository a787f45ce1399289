"""Private images: URLs are minted when a job is read, expire, and say nothing about the user;
the restored image carries no ComfyUI workflow and no EXIF/GPS; the original stays as uploaded."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from PIL import Image

from storage.urls import ImageUrls
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import post_photo

USER = "alice@example.com"
TTL = 3600


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle):
    s3_server.reset()
    async with api.client(tokens.issue(sub=USER)) as client:
        yield client


def private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def test_cloudfront_urls_are_signed_minted_at_read_and_expire(
    client: httpx.AsyncClient, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_800_000_000.0]
    urls = ImageUrls(
        ttl_seconds=TTL,
        cloudfront_domain="d1234.cloudfront.net",
        cloudfront_key_id="K2JCJMDEHXQW5F",
        cloudfront_private_key_pem=private_key_pem(),
        clock=lambda: now[0],
    )
    monkeypatch.setattr(api.app.state.services, "urls", urls)  # type: ignore[attr-defined]
    job_id = (await post_photo(client, images.jpeg_bytes())).json()["id"]

    first = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()["original_image_url"]
    now[0] += 100
    second = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()["original_image_url"]

    parts = urlsplit(first)
    query = parse_qs(parts.query)
    assert parts.netloc == "d1234.cloudfront.net"
    assert parts.path == f"/originals/{job_id}.jpg"
    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    assert int(query["Expires"][0]) == 1_800_000_000 + TTL
    assert int(parse_qs(urlsplit(second).query)["Expires"][0]) == 1_800_000_000 + 100 + TTL


async def test_presigned_urls_expire_after_the_ttl_and_name_no_user(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    job = (await post_photo(client, images.jpeg_bytes())).json()
    url = job["original_image_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(TTL)]
    for secret in (USER, "alice", "example.com", tokens.issue(sub=USER).split(".")[1]):
        assert secret not in url


async def test_restored_image_has_no_workflow_exif_or_gps(
    client: httpx.AsyncClient, worker: InProcessWorker, s3_server: S3ServerHandle
) -> None:
    photo = images.jpeg_bytes(320, 240, exif_orientation=6)
    job_id = (await post_photo(client, photo)).json()["id"]
    await worker.drain()
    restored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=f"restored/{job_id}.png")["Body"].read()
    assert set(images.png_chunk_types(restored)) <= {b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"pHYs", b"cHRM"}
    image = Image.open(io.BytesIO(restored))
    assert not image.getexif()
    assert "prompt" not in image.info
    stored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=f"originals/{job_id}.jpg")["Body"].read()
    assert stored == photo
