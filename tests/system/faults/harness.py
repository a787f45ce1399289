"""What the fault tests drive: the real `restoration api` / `restoration worker` processes, a
private Redis server, direct reads of the job rows, and an API client that refuses any 5xx but 503.

Every process is started by `Cluster` and stopped by it (SIGKILL at teardown if still running);
nothing here touches a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
from huey import RedisHuey

from tasks.queue import JobQueue, create_huey
from tests.fixtures import images
from tests.fixtures.proxy import free_port
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER
from tests.gql.helpers import RESTORE

RESTORATION = str(Path(sys.executable).parent / "restoration")
REDIS_SERVER = "/usr/bin/redis-server"
TERMINAL = ("completed", "failed")
START_TIMEOUT = 30.0
# Status polling interval while waiting for a job: bounds the error of every measured time.
POLL = 0.05


def pg_url(database: str, *, port: int = PG_PORT) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{port}/{database}"


# -- the API, as a client sees it ---------------------------------------------------------------


class ApiBroke(AssertionError):
    """The API answered with a server error other than 503, or leaked internals in a body."""


async def _no_server_errors(response: httpx.Response) -> None:
    """Every response the tests get is checked here: 503 is the only acceptable 5xx."""
    await response.aread()
    if response.status_code >= 500 and response.status_code != 503:
        raise ApiBroke(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text[:500]}"
        )
    if "Traceback" in response.text or 'File "' in response.text:
        raise ApiBroke(f"{response.request.url.path} leaked a traceback: {response.text[:500]}")
    rest = response.request.url.path.startswith("/api/")
    if rest and response.status_code == 503 and int(response.headers.get("retry-after", "0")) <= 0:
        raise ApiBroke(f"503 without Retry-After from {response.request.url.path}")


def api_client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        event_hooks={"response": [_no_server_errors]},
    )


async def post_photo(client: httpx.AsyncClient, data: bytes | None = None) -> httpx.Response:
    photo = data if data is not None else images.jpeg_bytes(320, 240)
    return await client.post(RESTORE, files={"file": ("photo.jpg", photo, "image/jpeg")})


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def read_job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/restoration/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_for_status(
    client: httpx.AsyncClient, job_id: str, statuses: tuple[str, ...], *, within: float, since: float | None = None
) -> tuple[dict[str, Any], float]:
    """Poll the job until its status is one of `statuses`; the job and the seconds since `since`
    (a `time.monotonic()` reading; the call's start by default). Fails after `within` seconds."""
    started = time.monotonic() if since is None else since
    deadline = time.monotonic() + within
    while True:
        job = await read_job(client, job_id)
        if job["status"] in statuses:
            return job, time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {within:g} s (wanted {statuses})")
        await asyncio.sleep(POLL)


async def wait_terminal(
    client: httpx.AsyncClient, job_id: str, *, within: float, since: float | None = None
) -> tuple[dict[str, Any], float]:
    return await wait_for_status(client, job_id, TERMINAL, within=within, since=since)


# -- direct reads of what the system holds -------------------------------------------------------


@dataclass
class Rows:
    """Reads the job table of the test's database directly (not through the API)."""

    dsn: str

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.dsn)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    async def count(self) -> int:
        [row] = await self._fetch("SELECT count(*) AS n FROM restoration_jobs")
        return int(row["n"])

    async def job(self, job_id: str) -> dict[str, Any]:
        [row] = await self._fetch("SELECT * FROM restoration_jobs WHERE id = $1::uuid", job_id)
        return dict(row)


def queue_of(redis_url: str) -> RedisHuey:
    """A non-consuming view of the restore queue on `redis_url`."""
    return JobQueue(create_huey(redis_url, blocking=False)).huey


# -- processes ----------------------------------------------------------------------------------


def worker_id_of(process: subprocess.Popen[bytes]) -> str:
    """The id a `restoration worker` process claims jobs under (tasks.runtime.worker_identity)."""
    return f"restoration-{socket.gethostname()}-{process.pid}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def worker_id(self) -> str:
        return worker_id_of(self.popen)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-whatever, like an OOM kill or a lost host."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def terminate(self) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)

    async def exited(self, within: float) -> int:
        """Wait (without blocking the loop) for the process to exit; its status."""
        deadline = time.monotonic() + within
        while (code := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {within:g} s:\n{self.log()[-3000:]}")
            await asyncio.sleep(POLL)
        return code


@dataclass
class Cluster:
    """The processes of one test, sharing one environment (database, Redis, S3, JWKS, ComfyUI)."""

    env: dict[str, str]
    workdir: Path
    processes: list[Process] = field(default_factory=list)
    api_url: str = ""

    def spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Process:
        log_path = self.workdir / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [RESTORATION, *args],
                env={**self.env, **(env or {})},
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = Process(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    async def start_api(self, *, port: int | None = None, **env: str) -> Process:
        """`restoration api` on a free port (or `port`); returns once /healthz answers."""
        port = port or free_port()
        process = self.spawn("api", ["api", "--port", str(port)], env)
        self.api_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert process.alive, f"the API exited during start-up:\n{process.log()[-3000:]}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.api_url}/healthz")).status_code == 200:
                        return process
                await asyncio.sleep(POLL)
        raise AssertionError(f"the API did not come up:\n{process.log()[-3000:]}")

    async def start_worker(self, *, concurrency: int | None = None, **env: str) -> Process:
        """`restoration worker`; returns once its runtime (database, ComfyUI socket, reconciler) is up."""
        args = ["worker", *(["--concurrency", str(concurrency)] if concurrency else [])]
        process = self.spawn("worker", args, env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert process.alive, f"the worker exited during start-up:\n{process.log()[-3000:]}"
            if "worker.started" in process.log():
                return process
            await asyncio.sleep(POLL)
        raise AssertionError(f"the worker did not come up:\n{process.log()[-3000:]}")

    def logs(self, tail: int = 2500) -> str:
        """The end of every process's log, for assertion messages."""
        return "\n".join(f"--- {p.name} pid={p.pid} ---\n{p.log()[-tail:]}" for p in self.processes)

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


# -- a private Redis server ---------------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server of the test's own on a free loopback port, without persistence: a stop and a
    start give an EMPTY Redis on the same port, as after a crash of a cache-only Redis."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        """SIGKILL: no goodbye to clients, nothing persisted."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def dbsize(self) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.dbsize())
        finally:
            client.close()


def dump(value: object) -> str:
    return json.dumps(value, default=str, indent=1)


def env_for_processes(
    *,
    database_url: str,
    redis_url: str,
    comfyui_url: str,
    s3: Any,
    jwks_url: str,
    audience: str,
    issuer: str,
) -> dict[str, str]:
    """The environment every process of a test gets (tests override single settings per process)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "COMFYUI_URL": comfyui_url,
        "S3_BUCKET": s3.bucket,
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "AWS_REGION": s3.region,
        "AWS_ACCESS_KEY_ID": s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
        "AUTH0_DOMAIN": "auth.restoration.test",
        "AUTH0_AUDIENCE": audience,
        "AUTH0_ISSUER": issuer,
        "AUTH0_JWKS_URL": jwks_url,
        "JOB_TIMEOUT_SECONDS": "30",
        # Fast failure detection, so a lost worker is noticed in seconds, not minutes.
        "WORKER_LEASE_SECONDS": "3",
        "RECONCILE_INTERVAL_SECONDS": "0.5",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "INFO",
    }


async def comfy_running(comfy: Any, prompt_id: str, *, within: float = 15.0) -> None:
    """Wait until the ComfyUI double is executing `prompt_id` (the worker handed it over)."""
    deadline = time.monotonic() + within
    while prompt_id not in (await comfy.state())["queue"]["running"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"ComfyUI never ran {prompt_id}: {dump(await comfy.state())[:2000]}")
        await asyncio.sleep(POLL)
