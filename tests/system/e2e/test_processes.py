"""The real `restoration migrate`, `restoration api` and `restoration worker` processes, end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from settings import Settings
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER
from tests.gql.helpers import post_photo

pytestmark = pytest.mark.e2e

RESTORATION = str(Path(sys.executable).parent / "restoration")
# A queue of their own, so the in-process tests' queue never sees these jobs.
E2E_REDIS_URL = os.environ.get("TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """An empty database of these processes' own (schema by `restoration migrate`), so the worker's
    reconciler never sees, let alone settles, the jobs other tests left in the session database."""
    name = f"restoration_e2e_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def environment(settings: Settings, own_database: str, comfy, tmp_path: Path) -> dict[str, str]:
    secret = settings.aws_secret_access_key
    with redis.Redis.from_url(E2E_REDIS_URL) as queue:
        queue.flushdb()  # nothing left over from an earlier run
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{own_database}",
        "REDIS_URL": E2E_REDIS_URL,
        "COMFYUI_URL": comfy.url,
        "S3_BUCKET": settings.s3_bucket or "",
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "AWS_REGION": settings.aws_region or "",
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "",
        "AUTH0_DOMAIN": "auth.restoration.test",
        "AUTH0_AUDIENCE": settings.auth0_audience or "",
        "AUTH0_ISSUER": settings.issuer,
        "AUTH0_JWKS_URL": settings.jwks_url,
        "JOB_TIMEOUT_SECONDS": "30",
        "WORKER_METRICS_PORT": str(free_port()),
    }


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESTORATION, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def processes(environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    migrated = run(environment, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    log_dir = tmp_path
    started = [
        subprocess.Popen(
            [RESTORATION, *command],
            env=environment,
            cwd=tmp_path,
            stdout=(log_dir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name, command in (("api", ["api", "--port", str(port)]), ("worker", ["worker"]))
    ]
    yield f"http://127.0.0.1:{port}", started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def wait_until_healthy(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert all(p.poll() is None for p in processes), "a process exited during start-up"
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the API did not come up")


def test_migrate_is_idempotent(environment: dict[str, str], tmp_path: Path) -> None:
    first = run(environment, "migrate", cwd=tmp_path)
    second = run(environment, "migrate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr


async def test_photo_goes_from_upload_to_completed_through_the_real_processes(
    processes: tuple[str, list[subprocess.Popen[bytes]]],
    environment: dict[str, str],
    tokens: TokenFactory,
    s3_server: S3ServerHandle,
    tmp_path: Path,
) -> None:
    url, started = processes
    await wait_until_healthy(url, started)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {tokens.issue(sub='eve')}"}) as api:
        response = await post_photo(api, images.jpeg_bytes(320, 240))
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        for _ in range(300):
            job = (await api.get(f"/api/v1/restoration/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)

    assert job["status"] == "completed", (job, (tmp_path / "worker.log").read_text()[-3000:])
    assert f"restored/{job_id}.png" in s3_server.keys("restored/")
    # The worker counts the job just after its row is committed: give the scrape a moment.
    async with httpx.AsyncClient() as scraper:
        for _ in range(100):
            worker_metrics = (await scraper.get(f"http://127.0.0.1:{environment['WORKER_METRICS_PORT']}/")).text
            if metric(worker_metrics, "restoration_jobs_completed_total") >= 1:
                break
            await asyncio.sleep(0.05)
    assert metric(worker_metrics, "restoration_jobs_completed_total") == 1
    assert metric(worker_metrics, "restoration_comfyui_up") == 1

    for process in started:
        process.send_signal(signal.SIGTERM)
    codes = [process.wait(timeout=40) for process in started]
    # The contract allows a clean exit or the signal's own status (uvicorn re-raises SIGTERM).
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_api_exits_0_promptly_on_a_stop_signal(environment: dict[str, str], tmp_path: Path, signum: int) -> None:
    port = free_port()
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [RESTORATION, "api", "--port", str(port)], env=environment, cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        api.send_signal(signum)
        assert api.wait(timeout=15) == 0, (tmp_path / "api.log").read_text()[-3000:]
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()


def test_api_on_a_busy_port_is_one_line_on_stderr_and_a_failed_exit(
    environment: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(environment, "api", "--port", str(port), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
