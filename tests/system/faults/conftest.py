"""Fixtures of the fault tests: a fresh database per test (copied from a migrated template), the
queue on Redis database 9 (TEST_FAULTS_REDIS_URL), and a `Cluster` that runs the real processes.

The shared fixtures come from tests/conftest.py: `s3_server` (moto), `jwks_server` + `tokens`,
`comfy` (the ComfyUI double as a subprocess, reset per test) and `pg_proxy`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.jwks import TEST_AUDIENCE, TEST_ISSUER, JwksServer, TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import PG_HOST, PG_PORT, PG_USER
from tests.system.faults.harness import Cluster, RedisServer, Rows, api_client, env_for_processes, pg_url

# Only the fault tests use this database index; it is flushed before every test.
FAULTS_REDIS_URL = os.environ.get("TEST_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="session")
async def template_database() -> AsyncIterator[str]:
    """A database built once by the committed migrations; every test gets a copy of it."""
    name = f"restoration_faults_tmpl_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # A process of its own: the ORM's context is process-wide, and the session's in-process
        # API (tests/api) must keep its own.
        migrate = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "restoration"),
            "migrate",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": pg_url(name)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, errors = await migrate.communicate()
        assert migrate.returncode == 0, errors.decode()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def fresh_database(template_database: str) -> AsyncIterator[str]:
    """An empty, migrated database of this test's own (no other test's jobs for its reconciler)."""
    name = f"restoration_faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def rows(fresh_database: str) -> Rows:
    return Rows(pg_url(fresh_database))


@pytest.fixture
def faults_redis_url() -> str:
    client = redis.Redis.from_url(FAULTS_REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    return FAULTS_REDIS_URL


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (free port, no persistence), stopped afterwards."""
    server = RedisServer(workdir=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(
    fresh_database: str,
    faults_redis_url: str,
    comfy: ComfyEmulatorHandle,
    s3_server: S3ServerHandle,
    jwks_server: JwksServer,
    tmp_path: Path,
) -> Iterator[Cluster]:
    """No process runs yet: the test starts the API and the workers it needs (and may override
    settings per process). Whatever still runs at the end is killed; S3 serves again."""
    s3_server.reset()
    cluster = Cluster(
        env=env_for_processes(
            database_url=pg_url(fresh_database),
            redis_url=faults_redis_url,
            comfyui_url=comfy.url,
            s3=s3_server,
            jwks_url=jwks_server.url,
            audience=TEST_AUDIENCE,
            issuer=TEST_ISSUER,
        ),
        workdir=tmp_path,
    )
    try:
        yield cluster
    finally:
        cluster.kill_all()
        s3_server.start()


@pytest.fixture
def token(tokens: TokenFactory) -> str:
    return tokens.issue(sub="faulty-fran")


@pytest.fixture
async def client_factory(token: str) -> AsyncIterator[object]:
    """`client_factory(url)`: an API client with the test user's token, closed at the end."""
    opened: list[httpx.AsyncClient] = []

    def make(url: str) -> httpx.AsyncClient:
        client = api_client(url, token)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()
