"""The jobsUpdated subscription: every change of any of the caller's jobs, never another user's,
over both websocket protocols, through the API's one pub/sub fan-out."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import post_photo
from tests.gql.ws import LEGACY_WS, TRANSPORT_WS, GraphQLSocket

JOBS_UPDATED = "subscription { jobsUpdated { id status progress processedImageUrl } }"


def hub_of(api: ApiServer):
    return api.app.state.services.events  # type: ignore[attr-defined]


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202
    return response.json()["id"]


async def subscribe(api: ApiServer, token: str, *, protocol: str = TRANSPORT_WS) -> GraphQLSocket:
    """A socket whose jobsUpdated subscription is registered with the hub (events from now on reach it)."""
    hub = hub_of(api)
    before = hub.watcher_count
    socket = await GraphQLSocket.open(api.url, protocol=protocol)
    assert (await socket.init({"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    await socket.subscribe(JOBS_UPDATED, {})
    for _ in range(500):
        if hub.watcher_count > before:
            return socket
        await asyncio.sleep(0.01)
    raise AssertionError("the subscription never registered")


async def updates_until(socket: GraphQLSocket, done: Any, *, wait: float = 15) -> list[dict]:
    """jobsUpdated payloads until `done(updates)` holds."""
    updates: list[dict] = []
    while not done(updates):
        message = await socket.receive(wait=wait)
        assert message["type"] in ("next", "data"), message
        assert "errors" not in message["payload"], message
        updates.append(message["payload"]["data"]["jobsUpdated"])
    return updates


async def nothing_arrives(socket: GraphQLSocket, *, within: float) -> bool:
    try:
        await socket.receive(wait=within)
    except TimeoutError:
        return True
    return False


def completed(*job_ids: str):
    return lambda updates: all(any(u["id"] == j and u["status"] == "COMPLETED" for u in updates) for j in job_ids)


@pytest.fixture
def sam() -> str:
    return f"sam-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server, queued, sam: str):
    s3_server.reset()
    async with api.client(tokens.issue(sub=sam)) as client:
        yield client


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscriber_sees_its_jobs_go_pending_processing_completed(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, sam: str, protocol: str
) -> None:
    socket = await subscribe(api, tokens.issue(sub=sam), protocol=protocol)
    first, second = await submit(client), await submit(client)
    await worker.drain()
    updates = await updates_until(socket, completed(first, second))
    await socket.close()

    for job_id in (first, second):
        seen = [u["status"] for u in updates if u["id"] == job_id]
        assert seen[0] == "PENDING"
        assert seen[-1] == "COMPLETED"
        assert "PROCESSING" in seen
        assert seen.index("PROCESSING") < seen.index("COMPLETED")
        [final] = [u for u in updates if u["id"] == job_id and u["status"] == "COMPLETED"]
        assert final["processedImageUrl"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_another_users_jobs_never_reach_the_subscriber(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, sam: str, protocol: str
) -> None:
    mallory = f"mallory-{uuid.uuid4().hex[:6]}"
    watcher = await subscribe(api, tokens.issue(sub=mallory), protocol=protocol)
    mine = await subscribe(api, tokens.issue(sub=sam), protocol=protocol)
    job_id = await submit(client)
    await worker.drain()
    await updates_until(mine, completed(job_id))  # every event was published and fanned out by now
    assert await nothing_arrives(watcher, within=0.5)
    await watcher.close()
    await mine.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_stream_stays_open_after_a_job_completes(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, sam: str, protocol: str
) -> None:
    socket = await subscribe(api, tokens.issue(sub=sam), protocol=protocol)
    first = await submit(client)
    await worker.drain()
    await updates_until(socket, completed(first))
    assert await nothing_arrives(socket, within=0.5)  # no `complete` either

    later = await submit(client)
    await worker.drain()
    updates = await updates_until(socket, completed(later))
    assert {u["id"] for u in updates} == {later}
    await socket.close()


async def test_progress_is_throttled_per_job_as_for_job_updated(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, comfy, sam: str
) -> None:
    await comfy.set_faults(service_time=1.0)
    socket = await subscribe(api, tokens.issue(sub=sam))
    job_id = await submit(client)
    await worker.drain()
    updates = await updates_until(socket, completed(job_id))
    reported = [u["progress"] for u in updates if u["status"] == "PROCESSING" and u["progress"]]
    assert reported == sorted(reported)
    # ~5 a second from the worker: a 1 s sampler run cannot produce one update per step (20 steps).
    assert 1 <= len(reported) < 20
    await socket.close()


async def test_stopping_the_subscription_releases_its_watcher(api: ApiServer, tokens: TokenFactory, sam: str) -> None:
    hub = hub_of(api)
    baseline = hub.watcher_count
    socket = await subscribe(api, tokens.issue(sub=sam))
    assert hub.watcher_count == baseline + 1
    await socket.stop()
    for _ in range(200):
        if hub.watcher_count == baseline:
            break
        await asyncio.sleep(0.01)
    assert hub.watcher_count == baseline
    await socket.close()


async def test_a_bad_token_closes_the_socket_with_4403(api: ApiServer) -> None:
    socket = await GraphQLSocket.open(api.url)
    await socket.send({"type": "connection_init", "payload": {"Authorization": "Bearer garbage"}})
    with pytest.raises(ConnectionClosed):
        await socket.receive()
    assert socket.connection.close_code == 4403


async def test_a_cross_origin_socket_is_refused(api: ApiServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await GraphQLSocket.open(api.url, headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403


async def test_over_http_it_needs_a_token(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        response = await anonymous.post("/graphql", json={"query": JOBS_UPDATED})
    assert response.status_code == 401
