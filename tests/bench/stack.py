"""Bring up the whole stack on loopback for a benchmark: PostgreSQL database, Redis, moto S3, JWKS,
the ComfyUI double and the real `restoration api` / `restoration worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import redis
from moto.server import ThreadedMotoServer

from storage.s3 import make_s3_client
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.jwks import TEST_AUDIENCE, TEST_ISSUER, TokenFactory, serving_jwks
from tests.fixtures.proxy import free_port

RESTORATION = str(Path(sys.executable).parent / "restoration")
REDIS_URL = "redis://127.0.0.1:6379/13"
# The scheduling benchmarks (scaling, utilisation, overhead, fairness) use their own database.
SCHEDULING_REDIS_URL = "redis://127.0.0.1:6379/8"
BUCKET = "restoration-bench"


def bench_redis_url() -> str:
    """TEST_REDIS_URL when set (each helper's own Redis database), else REDIS_URL."""
    return os.environ.get("TEST_REDIS_URL", REDIS_URL)


PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    api_url: str
    token: str
    comfy: ComfyEmulatorHandle
    workdir: Path
    api_pid: int
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]
    metrics_ports: list[int] = field(default_factory=list)
    # Every emulated ComfyUI server, in COMFYUI_URL order (`comfy` is the first).
    comfies: list[ComfyEmulatorHandle] = field(default_factory=list)
    tokens: TokenFactory | None = None

    def token_for(self, sub: str) -> str:
        """A token for another user (`token` is user "bench")."""
        assert self.tokens is not None
        return self.tokens.issue(sub=sub)

    def start_worker(self, concurrency: int | None = None) -> None:
        """Start one more `restoration worker` process.

        Each worker serves its metrics on a free port of its own (`metrics_ports`): on the default
        port a second worker (or another test run's worker) would fail to start.
        """
        port = free_port()
        self.processes.append(
            _spawn(
                ["worker", *(["--concurrency", str(concurrency)] if concurrency else [])],
                {**self.env, "WORKER_METRICS_PORT": str(port)},
                self.workdir,
                f"worker-{len(self.processes)}",
            )
        )
        self.metrics_ports.append(port)

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]


def _spawn(command: list[str], env: dict[str, str], workdir: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RESTORATION, *command],
        env=env,
        cwd=workdir,
        stdout=(workdir / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = make_s3_client(region="us-east-1", endpoint_url=url, access_key_id="bench", secret_access_key="bench")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"restoration_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        # In a process of its own: Tortoise's global state lets one process migrate only once, and a
        # benchmark may bring up several stacks in turn.
        migrate = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"import asyncio, models.db; asyncio.run(models.db.apply_migrations({url!r}))",
            cwd=PROJECT_ROOT,
        )
        if await migrate.wait() != 0:
            raise RuntimeError("migrating the benchmark database failed")
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def running_stack(
    *,
    service_time: float,
    workers: int = 1,
    concurrency: int | None = None,
    log_level: str = "WARNING",
    servers: int = 1,
    redis_url: str = REDIS_URL,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """`servers` emulated ComfyUI servers (all in COMFYUI_URL); `env` adds to the processes' settings."""
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory() as tmp, serving_jwks() as jwks, s3_server() as s3_url:
        workdir = Path(tmp)
        comfies = [
            ComfyEmulatorHandle(
                host="127.0.0.1",
                port=free_port(),
                root=workdir / ("comfy" if n == 0 else f"comfy{n}"),
                log_path=workdir / ("comfy.log" if n == 0 else f"comfy{n}.log"),
                service_time=service_time,
            )
            for n in range(servers)
        ]
        comfy = comfies[0]
        async with contextlib.AsyncExitStack() as cleanup:
            for handle in comfies:
                handle.root.mkdir()
                cleanup.callback(handle.stop)  # also when the benchmark fails
                handle.start()
            database_url = await cleanup.enter_async_context(database())
            port = free_port()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "COMFYUI_URL": ",".join(handle.url for handle in comfies),
                "S3_BUCKET": BUCKET,
                "S3_ENDPOINT_URL": s3_url,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AUTH0_DOMAIN": "auth.restoration.test",
                "AUTH0_AUDIENCE": TEST_AUDIENCE,
                "AUTH0_ISSUER": TEST_ISSUER,
                "AUTH0_JWKS_URL": jwks.url,
                "LOG_LEVEL": log_level,
                **(env or {}),
            }
            processes = [_spawn(["api", "--port", str(port)], env, workdir, "api")]
            stack = Stack(
                api_url=f"http://127.0.0.1:{port}",
                token=TokenFactory(jwks).issue(sub="bench"),
                comfy=comfy,
                workdir=workdir,
                api_pid=processes[0].pid,
                env=env,
                processes=processes,
                comfies=comfies,
                tokens=TokenFactory(jwks),
            )
            for _ in range(workers):
                stack.start_worker(concurrency)
            try:
                await _wait_healthy(stack.api_url)
                yield stack
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()


async def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the API did not come up")


def keep_logs(stack: Stack, destination: Path) -> None:
    """Copy the processes' and the double's logs out of the stack's temporary directory."""
    destination.mkdir(parents=True, exist_ok=True)
    for log in stack.workdir.glob("*.log"):
        shutil.copy(log, destination / log.name)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def redis_connections(pid: int, port: int = 6379) -> int:
    """Established TCP connections from `pid` to the Redis port."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)
