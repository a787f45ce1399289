"""dev's `/files/{key}` route: numbers in a URL that are not plain ASCII digits are refused (403,
never a 500), and an image is served with a private cache lifetime equal to what is left of its
URL's, and without content sniffing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from storage.local import LocalStorage, object_route

KEY = "restored/photo.png"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    local = LocalStorage(root=tmp_path, public_url="http://testserver", signing_key=b"k" * 32)
    (tmp_path / "restored").mkdir()
    (tmp_path / KEY).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    return local


@pytest.fixture
def client(storage: LocalStorage) -> TestClient:
    app = Starlette(routes=[Route("/files/{key:path}", object_route(storage))])
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("expires", ["²³", "١٢٣٤٥٦٧٨٩٠", "9" * 5000, "1" * 16, "-1", " 12", ""])
def test_an_expiry_that_is_not_a_plain_number_is_refused(
    client: TestClient, storage: LocalStorage, expires: str
) -> None:
    signature = storage.presigned_get_url(KEY, ttl_seconds=60).split("signature=")[1]
    response = client.get(f"/files/{KEY}", params={"expires": expires, "signature": signature})
    assert response.status_code == 403, response.text


def test_an_image_is_cached_privately_for_the_rest_of_its_urls_lifetime(
    client: TestClient, storage: LocalStorage
) -> None:
    url = storage.presigned_get_url(KEY, ttl_seconds=600)
    response = client.get(url)
    assert response.status_code == 200
    directive, max_age = response.headers["cache-control"].split(", ")
    assert directive == "private"
    assert max_age.startswith("max-age=")
    assert 590 <= int(max_age.removeprefix("max-age=")) <= 600
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_cache_lifetime_shrinks_as_the_url_ages(client: TestClient, storage: LocalStorage) -> None:
    expires = int(time.time()) + 5
    url = storage.presigned_get_url(KEY, ttl_seconds=5)
    assert f"expires={expires}" in url or f"expires={expires - 1}" in url
    max_age = int(client.get(url).headers["cache-control"].split("max-age=")[1])
    assert 0 <= max_age <= 5


def test_a_signed_put_with_a_superscript_length_is_refused(storage: LocalStorage) -> None:
    signed = storage.presigned_put_url("uploads/x", size=3, content_type=None, ttl_seconds=60)
    expires = signed.url.split("expires=")[1].split("&")[0]
    signature = signed.url.split("signature=")[1]
    assert not storage.verify_put("uploads/x", expires=expires, length="³", content_type=None, signature=signature)
    assert not storage.verify_put("uploads/x", expires="9" * 5000, length="3", content_type=None, signature=signature)
    assert storage.verify_put("uploads/x", expires=expires, length="3", content_type=None, signature=signature)
