"""Fixtures of the scale tests: several ComfyUI emulators (real processes on their own ports), a
private Redis server and a fresh database per test, and a `Cluster` whose processes each get the
COMFYUI_URL the test gives them.

The database fixtures are the fault tests' (tests/system/faults/conftest.py); the shared ones come
from tests/conftest.py: `s3_server` (moto), `jwks_server` + `tokens`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.jwks import TEST_AUDIENCE, TEST_ISSUER, JwksServer, TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.system.faults.conftest import fresh_database, private_redis, rows, template_database
from tests.system.faults.harness import Cluster, RedisServer, api_client, env_for_processes, pg_url
from tests.system.scale.helpers import Emulators, dead_server

__all__ = ["fresh_database", "private_redis", "rows", "template_database"]


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[Emulators]:
    started = Emulators(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def cluster(
    fresh_database: str,
    private_redis: RedisServer,
    s3_server: S3ServerHandle,
    jwks_server: JwksServer,
    tmp_path: Path,
) -> Iterator[Cluster]:
    """No process runs yet: the test starts the APIs and workers it needs, each with its
    COMFYUI_URL (and any other setting) as keyword arguments. Whatever still runs is killed."""
    s3_server.reset()
    cluster = Cluster(
        env=env_for_processes(
            database_url=pg_url(fresh_database),
            redis_url=private_redis.url,
            comfyui_url=dead_server(),  # every test names its servers per process
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


@pytest.fixture
async def user_client(tokens: TokenFactory) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """`user_client(api_url, user)`: an API client with `user`'s token, closed at the end."""
    opened: list[httpx.AsyncClient] = []

    def make(url: str, user: str = "scaling-sam") -> httpx.AsyncClient:
        client = api_client(url, tokens.issue(sub=user))
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()
