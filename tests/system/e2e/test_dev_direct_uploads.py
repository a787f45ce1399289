"""Direct uploads against a real `restoration dev`: its own signed PUT URLs refuse a wrong length,
a tampered or expired signature, and a body cut short, leaving nothing under `uploads/`."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.fixtures import images
from tests.fixtures.proxy import free_port
from tests.system.e2e.test_dev import RESTORATION, DevServer, newcomer_env, start_dev, stop

pytestmark = pytest.mark.e2e

UPLOADS = "/api/v1/restoration/uploads"
# Short enough to watch a ticket expire, long enough for every step of one test.
UPLOAD_TTL = 5


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    workdir = tmp_path_factory.mktemp("dev-direct")
    server = start_dev(
        workdir, "--port", str(free_port()), env=newcomer_env(workdir, UPLOAD_TTL_SECONDS=str(UPLOAD_TTL))
    )
    yield server
    stop(server.process)


@pytest.fixture
def api(dev: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev.url, headers={"Authorization": f"Bearer {dev.token}"}, timeout=30) as client:
        yield client


def objects(dev: DevServer, prefix: str) -> list[Path]:
    """Every file under `.data/objects/<prefix>`, temporary ones included."""
    root = dev.workdir / ".data" / "objects" / prefix
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def ticket_for(api: httpx.Client, size: int, content_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"size": size} | ({"content_type": content_type} if content_type else {})
    response = api.post(UPLOADS, json=body)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def send(ticket: dict[str, Any], data: bytes, **headers: str) -> httpx.Response:
    """PUT without the API token (the URL carries its own authorization)."""
    sent = {**ticket["headers"], **headers}
    return httpx.request(ticket["method"], ticket["url"], content=data, headers=sent, timeout=30)


def wait_for_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = api.get(f"/api/v1/restoration/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_a_photo_sent_to_the_dev_url_is_restored(dev: DevServer, api: httpx.Client) -> None:
    data = images.jpeg_bytes(640, 480)
    ticket = ticket_for(api, len(data), "image/jpeg")
    assert urlparse(ticket["url"]).path == f"/files/uploads/{ticket['id']}"
    assert ticket["headers"] == {"Content-Length": str(len(data)), "Content-Type": "image/jpeg"}

    assert send(ticket, data).status_code == 200
    response = api.post(f"{UPLOADS}/{ticket['id']}/restore", json={"denoise": 0.5})

    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/restoration/jobs/{job['id']}"
    assert (dev.workdir / ".data" / "objects" / "originals" / f"{job['id']}.jpg").read_bytes() == data
    assert objects(dev, "uploads") == []
    assert wait_for_job(api, job["id"])["status"] == "completed"


@pytest.mark.parametrize("extra", [1, -1], ids=["longer", "shorter"])
def test_a_put_of_another_length_than_signed_is_refused_and_stores_nothing(
    dev: DevServer, api: httpx.Client, extra: int
) -> None:
    data = images.jpeg_bytes()
    ticket = ticket_for(api, len(data))
    body = data + b"\0" if extra > 0 else data[:-1]

    response = send(ticket, body, **{"Content-Length": str(len(body))})

    assert response.status_code == 403
    assert "Content-Length" in response.json()["detail"]
    assert objects(dev, "uploads") == []
    assert api.post(f"{UPLOADS}/{ticket['id']}/restore").status_code == 409  # nothing was staged


def test_a_body_cut_short_leaves_nothing(dev: DevServer, api: httpx.Client) -> None:
    data = images.jpeg_bytes(640, 480)
    ticket = ticket_for(api, len(data))
    url = urlparse(ticket["url"])
    head = f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {len(data)}\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(head.encode() + data[: len(data) // 2])
        deadline = time.monotonic() + 10
        while not objects(dev, "uploads"):  # the body is being received into a temporary file
            assert time.monotonic() < deadline
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while objects(dev, "uploads"):
        assert time.monotonic() < deadline, objects(dev, "uploads")
        time.sleep(0.02)
    assert api.post(f"{UPLOADS}/{ticket['id']}/restore").status_code == 409


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("signature=", "signature=0"),
        lambda url: url.replace("length=", "length=1"),
        lambda url: url.replace("expires=", "expires=9"),
    ],
    ids=["signature", "length", "expiry"],
)
def test_a_tampered_put_url_is_403(dev: DevServer, api: httpx.Client, tamper: Any) -> None:
    data = images.jpeg_bytes()
    ticket = ticket_for(api, len(data))
    forged = {**ticket, "url": tamper(ticket["url"])}
    response = send(forged, data, **{"Content-Length": str(len(data))})
    assert response.status_code == 403
    assert objects(dev, "uploads") == []


def test_a_put_without_the_signed_content_type_is_403(dev: DevServer, api: httpx.Client) -> None:
    data = images.jpeg_bytes()
    ticket = ticket_for(api, len(data), "image/jpeg")
    assert send(ticket, data, **{"Content-Type": "text/html"}).status_code == 403
    assert objects(dev, "uploads") == []


def test_a_put_without_content_length_is_411(dev: DevServer, api: httpx.Client) -> None:
    data = images.jpeg_bytes()
    ticket = ticket_for(api, len(data))
    response = httpx.put(ticket["url"], content=iter([data]), timeout=30)  # chunked: no length
    assert response.status_code == 411
    assert objects(dev, "uploads") == []


def test_an_expired_put_url_is_403_and_the_ticket_404(dev: DevServer, api: httpx.Client) -> None:
    data = images.jpeg_bytes()
    ticket = ticket_for(api, len(data))
    time.sleep(UPLOAD_TTL + 1.1)
    assert send(ticket, data).status_code == 403
    assert objects(dev, "uploads") == []
    assert api.post(f"{UPLOADS}/{ticket['id']}/restore").status_code == 404


def test_non_image_bytes_are_415_and_the_staged_file_is_deleted(dev: DevServer, api: httpx.Client) -> None:
    data = b"<html><script>alert(1)</script></html>"
    ticket = ticket_for(api, len(data))
    assert send(ticket, data).status_code == 200
    originals_before = objects(dev, "originals")
    assert api.post(f"{UPLOADS}/{ticket['id']}/restore").status_code == 415
    assert objects(dev, "uploads") == []
    assert objects(dev, "originals") == originals_before


def test_submit_sends_a_large_photo_as_a_direct_upload(dev: DevServer) -> None:
    head = images.jpeg_bytes(640, 480)
    photo = dev.workdir / "large.jpg"
    photo.write_bytes(head + b"\0" * (5 * 1024 * 1024 - len(head)))  # over the 4 MiB threshold
    result = subprocess.run(
        [RESTORATION, "submit", str(photo)],
        cwd=dev.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=newcomer_env(dev.workdir),
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split()[1]
    assert (dev.workdir / ".data" / "objects" / "originals" / f"{job_id}.jpg").read_bytes() == photo.read_bytes()
    assert objects(dev, "uploads") == []
    with sqlite3.connect(dev.workdir / ".data" / "restoration.sqlite3") as db:
        used = db.execute("SELECT size FROM upload_tickets WHERE used_at IS NOT NULL").fetchall()
    assert (photo.stat().st_size,) in used
