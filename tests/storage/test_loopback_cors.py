"""`restoration dev`'s object routes answer a page opened under another loopback name of the same
server (`localhost` for the printed `127.0.0.1`), and nothing else changes: the signature is still
checked, other origins and other routes get no CORS answer from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from storage.local import LocalStorage, LoopbackObjectCors, SignedPutMiddleware, loopback_origins, object_route

PRINTED = "http://127.0.0.1:8000"
OPENED_AS = "http://localhost:8000"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(root=tmp_path, public_url=PRINTED, signing_key=b"k" * 32)


@pytest.fixture
def client(storage: LocalStorage) -> TestClient:
    async def token(request: object) -> PlainTextResponse:
        return PlainTextResponse("a dev token")

    app = Starlette(
        routes=[Route("/files/{key:path}", object_route(storage)), Route("/web/dev-token", token, methods=["POST"])]
    )
    served = LoopbackObjectCors(SignedPutMiddleware(app, storage=storage), origins=loopback_origins(PRINTED))
    return TestClient(served, base_url=PRINTED)


def preflight(client: TestClient, path: str, origin: str) -> dict[str, str]:
    response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    return dict(response.headers)


def test_every_loopback_spelling_of_the_origin_is_one_server() -> None:
    expected = {"http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"}
    assert loopback_origins("http://127.0.0.1:8000") == expected
    assert loopback_origins("http://localhost:8000/") == expected
    assert loopback_origins("http://[::1]:8000") == expected


def test_a_server_printed_under_another_name_has_no_aliases() -> None:
    assert loopback_origins("http://192.168.1.20:8000") == frozenset()
    assert loopback_origins("http://photos.example:8000") == frozenset()


def test_a_direct_upload_from_the_page_opened_as_localhost_is_allowed(
    client: TestClient, storage: LocalStorage
) -> None:
    signed = storage.presigned_put_url("uploads/t", size=4, content_type="image/jpeg", ttl_seconds=60)
    path = signed.url.removeprefix(PRINTED)
    assert preflight(client, path, OPENED_AS).get("access-control-allow-origin") == OPENED_AS
    response = client.put(path, content=b"\xff\xd8\xff\xe0", headers={**signed.headers, "Origin": OPENED_AS})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == OPENED_AS


def test_the_signature_is_still_checked_for_the_page_opened_as_localhost(
    client: TestClient, storage: LocalStorage
) -> None:
    signed = storage.presigned_put_url("uploads/t", size=4, content_type="image/jpeg", ttl_seconds=60)
    tampered = signed.url.removeprefix(PRINTED).replace("uploads/t", "originals/t")
    response = client.put(tampered, content=b"\xff\xd8\xff\xe0", headers={**signed.headers, "Origin": OPENED_AS})
    assert response.status_code == 403
    assert not (storage.root / "originals").exists()


def test_an_image_is_readable_by_the_page_opened_as_localhost(client: TestClient, storage: LocalStorage) -> None:
    (storage.root / "restored").mkdir()
    (storage.root / "restored" / "j.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    url = storage.presigned_get_url("restored/j.png", ttl_seconds=60)
    response = client.get(url.removeprefix(PRINTED), headers={"Origin": OPENED_AS})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == OPENED_AS


def test_another_site_gets_no_cors_answer_from_the_object_routes(client: TestClient, storage: LocalStorage) -> None:
    signed = storage.presigned_put_url("uploads/t", size=4, content_type="image/jpeg", ttl_seconds=60)
    headers = preflight(client, signed.url.removeprefix(PRINTED), "http://evil.example")
    assert "access-control-allow-origin" not in headers


def test_other_routes_get_no_cors_answer_for_the_loopback_names(client: TestClient) -> None:
    response = client.post("/web/dev-token", headers={"Origin": OPENED_AS})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
