"""jobsUpdated across an outage of the API's event stream: once the API's one Redis subscription is
back, the watcher gets every job of its user that changed meanwhile (submitted through another API
process and finished while the stream was down included), newest state only, in the order of the
changes, and never anything it already had or another user's job.

The watching "API process" is a second `JobEventHub` whose Redis connection goes through a proxy
the test cuts; jobs are submitted through the session's API (the other replica) and run by the
in-process worker, both of which reach Redis directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlparse

import httpx
import pytest
import redis.asyncio as aioredis

from gql.context import Services
from gql.live import JobEventHub
from gql.views import JobView
from gql.watching import current_event, user_events_since, watch_user_jobs
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import post_photo

WAIT = 15.0
POLL = 0.02


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    target = urlparse(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def hub(redis_proxy: TcpProxy, redis_url: str) -> AsyncIterator[JobEventHub]:
    """The event hub of an API process whose Redis is behind `redis_proxy`."""
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{redis_proxy.port}{urlparse(redis_url).path}", socket_connect_timeout=2
    )
    hub = JobEventHub(client, resync=current_event, catch_up=user_events_since)
    await hub.start()
    yield hub
    await hub.close()
    await client.aclose()


@pytest.fixture
def sam() -> str:
    return f"sam-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server, queued, sam: str) -> AsyncIterator[httpx.AsyncClient]:
    s3_server.reset()
    async with api.client(tokens.issue(sub=sam)) as client:
        yield client


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(160, 120))
    assert response.status_code == 202
    job_id: str = response.json()["id"]
    return job_id


@contextlib.asynccontextmanager
async def watching(services: Services, user_id: str) -> AsyncIterator[asyncio.Queue[JobView]]:
    """`watch_user_jobs` running in the background, its updates in a queue."""
    updates: asyncio.Queue[JobView] = asyncio.Queue()
    before = services.events.watcher_count

    async def pump() -> None:
        async for view in watch_user_jobs(services=services, user_id=user_id):
            updates.put_nowait(view)

    task = asyncio.create_task(pump())
    try:
        async with asyncio.timeout(WAIT):
            while services.events.watcher_count == before:
                assert not task.done(), task
                await asyncio.sleep(0.01)
        yield updates
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], *, within: float = WAIT) -> None:
    for _ in range(int(within / POLL)):
        if condition():
            return
        await asyncio.sleep(POLL)
    raise AssertionError("the condition never held")


async def take(updates: asyncio.Queue[JobView], count: int) -> list[JobView]:
    async with asyncio.timeout(WAIT):
        return [await updates.get() for _ in range(count)]


async def test_a_watcher_gets_every_job_changed_while_the_event_stream_was_down(
    api: ApiServer,
    tokens: TokenFactory,
    client: httpx.AsyncClient,
    worker: InProcessWorker,
    redis_proxy: TcpProxy,
    hub: JobEventHub,
    sam: str,
) -> None:
    await hub.wait_connected(within=WAIT)
    services = dataclasses.replace(api.app.state.services, events=hub)  # type: ignore[attr-defined]
    async with watching(services, sam) as updates:
        before = await submit(client)
        await worker.drain()
        while (view := await take(updates, 1))[0].status.value != "completed":
            assert str(view[0].id) == before
        assert updates.empty()

        await redis_proxy.cut()
        await until(lambda: not hub.connected.is_set())
        finished = [await submit(client), await submit(client)]
        async with api.client(tokens.issue(sub=f"mallory-{uuid.uuid4().hex[:6]}")) as mallory:
            assert (await post_photo(mallory, images.jpeg_bytes(160, 120))).status_code == 202
        assert len(await worker.drain()) == 3
        waiting = await submit(client)
        await asyncio.sleep(0)
        assert updates.empty()  # the stream is down: nothing arrives

        await redis_proxy.restore()
        caught_up = await take(updates, 3)

    assert [str(view.id) for view in caught_up] == [*finished, waiting]  # the order of the changes
    assert [view.status.value for view in caught_up] == ["completed", "completed", "pending"]
    assert updates.empty()  # nothing more: `before` is not sent again, mallory's job never
