"""`restoration dev`: the whole product in one process, started the way a newcomer starts it."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
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
# A clean stop takes a second or two (the API's grace period is for in-flight work, none here).
PROMPT_EXIT_SECONDS = 15
# Start-up of a refused command (imports and settings) is a couple of seconds; it binds nothing else.
REFUSAL_SECONDS = 30


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


def newcomer_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing configured (every service must be the embedded one), and the venv not on PATH."""
    entries = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    path = os.pathsep.join(entry for entry in entries if Path(entry) != Path(RESTORATION).parent)
    return {"PATH": path, "HOME": str(home), **extra}


def start_dev(workdir: Path, *args: str, env: dict[str, str]) -> DevServer:
    process = subprocess.Popen(
        [RESTORATION, "dev", *args],
        cwd=workdir,
        env=env,
        stdout=(workdir / "dev.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    token_file = workdir / ".data" / "dev-token"
    deadline = time.monotonic() + 60
    while not token_file.exists():
        assert process.poll() is None, (workdir / "dev.log").read_text()
        assert time.monotonic() < deadline, "restoration dev did not start"
        time.sleep(0.05)
    url = (workdir / ".data" / "dev-url").read_text().strip()
    return DevServer(process=process, workdir=workdir, url=url, token=token_file.read_text().strip())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    env = newcomer_env(tmp_path, SIGNED_URL_TTL_SECONDS=str(SIGNED_URL_TTL))
    server = start_dev(tmp_path, "--port", str(free_port()), env=env)
    yield server
    stop(server.process)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def wait_for_emulator(port: int, process: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/prompt", timeout=1)
        except httpx.TransportError:
            assert time.monotonic() < deadline
            assert process.poll() is None
            time.sleep(0.05)


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


def test_a_fresh_dev_server_is_ready_before_the_first_upload(dev_server: DevServer) -> None:
    assert not (dev_server.workdir / ".data" / "objects" / "originals").exists()  # nothing uploaded yet
    ready = httpx.get(f"{dev_server.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["dependencies"]["storage"] == "ok"


def test_the_port_comes_from_the_port_environment_variable(tmp_path: Path) -> None:
    port = free_port()
    server = start_dev(tmp_path, env=newcomer_env(tmp_path, PORT=str(port)))
    try:
        assert server.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        stop(server.process)


def test_the_banner_names_a_submit_command_that_works_from_its_directory(dev_server: DevServer) -> None:
    banner = (dev_server.workdir / "dev.log").read_text()
    found = re.search(r"Try:\s+(.+) path/to/photo\.jpg --watch$", banner, re.MULTILINE)
    assert found, banner
    command = shlex.split(found.group(1))
    assert command[-1] == "submit"
    (dev_server.workdir / "photo.jpg").write_bytes(images.jpeg_bytes(64, 48))
    # The same PATH the dev server had: the venv's bin folder is not on it.
    result = subprocess.run(
        [*command, "photo.jpg"],
        cwd=dev_server.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=newcomer_env(dev_server.workdir),
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"job [0-9a-f-]{36} pending\n", result.stdout)


def test_submit_ignores_server_settings_it_does_not_use(dev_server: DevServer) -> None:
    photo = dev_server.workdir / "grandma.jpg"
    photo.write_bytes(images.jpeg_bytes(64, 48))
    result = subprocess.run(
        [RESTORATION, "submit", str(photo)],
        cwd=dev_server.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=newcomer_env(dev_server.workdir, DATABASE_URL="nonsense", REDIS_URL="nonsense", COMFYUI_URL="nonsense"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("job ")


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
    assert dev_server.process.wait(timeout=PROMPT_EXIT_SECONDS) == 0
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
        assert wait_for_emulator(port, process).json() == {"exec_info": {"queue_remaining": 0}}
    finally:
        stop(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_emulator_command_exits_0_promptly_on_a_stop_signal(tmp_path: Path, signum: int) -> None:
    port = free_port()
    process = subprocess.Popen(
        [RESTORATION, "emulator", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_emulator(port, process)
        process.send_signal(signum)
        assert process.wait(timeout=PROMPT_EXIT_SECONDS) == 0
    finally:
        stop(process)


@pytest.mark.parametrize("command", ["dev", "emulator"])
def test_a_busy_port_is_one_line_on_stderr_and_a_failed_exit(tmp_path: Path, busy_port: int, command: str) -> None:
    result = subprocess.run(
        [RESTORATION, command, "--port", str(busy_port)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=REFUSAL_SECONDS,
        env=newcomer_env(tmp_path),
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / ".data" / "redis").exists()  # refused before anything was started
