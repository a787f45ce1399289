"""`restoration dev`: the whole product in one process, started the way a newcomer starts it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures import images
from tests.fixtures.proxy import free_port

pytestmark = pytest.mark.e2e

RESTORATION = str(Path(sys.executable).parent / "restoration")
SIGNED_URL_TTL = 3


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    workdir: Path
    url: str
    token: str


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    port = free_port()
    # Nothing configured: every service must be the embedded one.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SIGNED_URL_TTL_SECONDS": str(SIGNED_URL_TTL),
    }
    process = subprocess.Popen(
        [RESTORATION, "dev", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "dev.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    token_file = tmp_path / ".data" / "dev-token"
    deadline = time.monotonic() + 60
    while not token_file.exists():
        assert process.poll() is None, (tmp_path / "dev.log").read_text()
        assert time.monotonic() < deadline, "restoration dev did not start"
        time.sleep(0.05)
    url = (tmp_path / ".data" / "dev-url").read_text().strip()
    yield DevServer(process=process, workdir=tmp_path, url=url, token=token_file.read_text().strip())
    if process.poll() is None:
        process.kill()
        process.wait()


async def test_a_photo_is_restored_and_served_at_an_expiring_signed_url(dev_server: DevServer) -> None:
    headers = {"Authorization": f"Bearer {dev_server.token}"}
    async with httpx.AsyncClient(base_url=dev_server.url, headers=headers, timeout=30) as client:
        response = await client.post(
            "/api/v1/restoration/restore", files={"file": ("old.jpg", images.jpeg_bytes(640, 480), "image/jpeg")}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        for _ in range(600):
            job = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
    assert job["status"] == "completed", job
    url = job["processed_image_url"]
    assert f"/files/restored/{job_id}.png?" in url
    async with httpx.AsyncClient() as anonymous:
        fetched = await anonymous.get(url)
        assert fetched.status_code == 200
        assert fetched.content.startswith(b"\x89PNG")
        assert (await anonymous.get(url.replace("signature=", "signature=0"))).status_code == 403
        await asyncio.sleep(SIGNED_URL_TTL + 1.1)  # let the URL expire
        assert (await anonymous.get(url)).status_code == 403


def test_submit_command_follows_the_job_and_downloads_the_result(dev_server: DevServer) -> None:
    photo = dev_server.workdir / "grandma.jpg"
    photo.write_bytes(images.jpeg_bytes(640, 480))
    result = subprocess.run(
        [RESTORATION, "submit", str(photo), "--watch", "--out", "restored.png"],
        cwd=dev_server.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert result.returncode == 0, result.stderr
    assert "100.0% completed" in result.stderr
    assert (dev_server.workdir / "restored.png").read_bytes().startswith(b"\x89PNG")


def test_dev_talks_only_to_what_it_started_itself(dev_server: DevServer) -> None:
    out = subprocess.run(["ss", "-Htnp"], capture_output=True, text=True, check=True).stdout
    own = f"pid={dev_server.process.pid},"
    listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True).stdout
    own_ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines() if own in line}
    connections = [
        (line.split()[3].rsplit(":", 1)[1], line.split()[4].rsplit(":", 1)[1])
        for line in out.splitlines()
        if own in line
    ]
    # Every connection is either accepted by one of its own listeners or made to one of them.
    foreign = [(local, peer) for local, peer in connections if local not in own_ports and peer not in own_ports]
    assert connections
    assert foreign == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_everything_and_leaves_no_child_process(dev_server: DevServer, signum: int) -> None:
    children = children_of(dev_server.process.pid)
    assert children, "the embedded Redis should be a child process"
    dev_server.process.send_signal(signum)
    assert dev_server.process.wait(timeout=30) in (0, -signum)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children)


def test_emulator_command_serves_the_comfyui_protocol(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [RESTORATION, "emulator", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/prompt", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                assert process.poll() is None
                time.sleep(0.05)
        assert answer.json() == {"exec_info": {"queue_remaining": 0}}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
