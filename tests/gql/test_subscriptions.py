"""The jobUpdated subscription over graphql-transport-ws and legacy graphql-ws, fed by Redis pub/sub."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app import EVENTS_CLIENT_NAME
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer
from tests.fixtures.worker import InProcessWorker
from tests.gql.helpers import post_photo
from tests.gql.ws import JOB_UPDATED, LEGACY_WS, TRANSPORT_WS, GraphQLSocket


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory, s3_server):
    s3_server.reset()
    async with api.client(tokens.issue(sub="sam")) as client:
        yield client


async def submit(client: httpx.AsyncClient) -> str:
    response = await post_photo(client, images.jpeg_bytes(320, 240))
    assert response.status_code == 202
    return response.json()["id"]


async def watch(api: ApiServer, token: str, job_id: str, *, protocol: str = TRANSPORT_WS) -> GraphQLSocket:
    socket = await GraphQLSocket.open(api.url, protocol=protocol)
    assert (await socket.init({"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    return socket


def statuses(payloads: list[dict]) -> list[str]:
    return [payload["data"]["jobUpdated"]["status"] for payload in payloads]


def hub_of(api: ApiServer):
    return api.app.state.services.events  # type: ignore[attr-defined]


def event_connections(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        db = str(client.connection_pool.connection_kwargs.get("db", 0))
        # Per database: another test session on the same Redis server has its own API.
        return sum(
            1 for entry in client.client_list() if entry.get("name") == EVENTS_CLIENT_NAME and entry.get("db") == db
        )
    finally:
        client.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_every_change_reaches_the_watcher_in_order_then_it_completes(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, comfy, protocol: str
) -> None:
    await comfy.set_faults(service_time=1.0)
    job_id = await submit(client)
    socket = await watch(api, tokens.issue(sub="sam"), job_id, protocol=protocol)
    first = await socket.receive()
    assert first["payload"]["data"]["jobUpdated"]["status"] == "PENDING"

    await worker.drain()
    payloads = await socket.results()
    await socket.close()

    seen = ["PENDING", *statuses(payloads)]
    assert seen[0] == "PENDING"
    assert seen[-1] == "COMPLETED"
    assert "PROCESSING" in seen
    assert seen.index("PROCESSING") < seen.index("COMPLETED")
    final = payloads[-1]["data"]["jobUpdated"]
    assert final["processedImageUrl"]
    assert final["progress"] is None


async def test_progress_from_comfyui_reaches_the_watcher_and_never_goes_back(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(service_time=1.0)
    job_id = await submit(client)
    socket = await watch(api, tokens.issue(sub="sam"), job_id)
    await worker.drain()
    payloads = await socket.results()

    progress = [job["progress"] for job in (p["data"]["jobUpdated"] for p in payloads) if job["status"] == "PROCESSING"]
    reported = [value for value in progress if value]
    assert len(reported) >= 3
    assert reported == sorted(reported)
    assert all(0.0 < value <= 1.0 for value in reported)
    # Throttled to ~5 a second: a 1 s sampler run cannot produce one update per step (20 steps).
    assert len(reported) < 20


async def test_failed_job_ends_the_stream_with_its_message(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker, comfy
) -> None:
    await comfy.set_faults(mode="execution_error", node="31", message="CUDA out of memory")
    job_id = await submit(client)
    socket = await watch(api, tokens.issue(sub="sam"), job_id)
    await worker.drain()
    payloads = await socket.results()
    final = payloads[-1]["data"]["jobUpdated"]
    assert final["status"] == "FAILED"
    assert final["errorMessage"] == "ComfyUI node 31 (KSampler) failed: CUDA out of memory"


async def test_already_terminal_job_gives_one_message_then_completes(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, worker: InProcessWorker
) -> None:
    job_id = await submit(client)
    await worker.drain()
    socket = await watch(api, tokens.issue(sub="sam"), job_id)
    payloads = await socket.results()
    assert statuses(payloads) == ["COMPLETED"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_another_users_job_is_one_not_found_error(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, protocol: str
) -> None:
    job_id = await submit(client)
    for target in (job_id, str(uuid.uuid4())):
        socket = await watch(api, tokens.issue(sub="mallory"), target, protocol=protocol)
        payloads = await socket.results()
        await socket.close()
        assert len(payloads) == 1
        [error] = payloads[0]["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert payloads[0].get("data") is None


async def test_bad_token_closes_the_socket_with_4403(api: ApiServer, tokens: TokenFactory) -> None:
    socket = await GraphQLSocket.open(api.url)
    await socket.send({"type": "connection_init", "payload": {"Authorization": "Bearer garbage"}})
    with pytest.raises(ConnectionClosed):
        await socket.receive()
    assert socket.connection.close_code == 4403


async def test_missing_token_closes_the_socket_with_4403(api: ApiServer) -> None:
    socket = await GraphQLSocket.open(api.url)
    await socket.send({"type": "connection_init", "payload": {}})
    with pytest.raises(ConnectionClosed):
        await socket.receive()
    assert socket.connection.close_code == 4403


async def test_legacy_protocol_answers_a_bad_token_with_connection_error(api: ApiServer) -> None:
    socket = await GraphQLSocket.open(api.url, protocol=LEGACY_WS)
    answer = await socket.init({"Authorization": "Bearer garbage"})
    assert answer["type"] == "connection_error"
    with pytest.raises(ConnectionClosed):
        await socket.receive()


async def test_token_key_case_does_not_matter(api: ApiServer, tokens: TokenFactory) -> None:
    socket = await GraphQLSocket.open(api.url)
    assert (await socket.init({"authorization": f"Bearer {tokens.issue(sub='sam')}"}))["type"] == "connection_ack"
    await socket.close()


async def test_token_from_the_upgrade_request_header_is_accepted(api: ApiServer, tokens: TokenFactory) -> None:
    socket = await GraphQLSocket.open(api.url, headers={"Authorization": f"Bearer {tokens.issue(sub='sam')}"})
    assert (await socket.init())["type"] == "connection_ack"
    await socket.close()


async def test_cross_origin_socket_is_refused_by_default(api: ApiServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await GraphQLSocket.open(api.url, headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403


async def test_cors_is_not_granted_to_unlisted_origins(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        response = await anonymous.options(
            "/graphql", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
    assert "access-control-allow-origin" not in response.headers


async def test_one_redis_connection_serves_every_watcher_and_disconnects_clean_up(
    api: ApiServer, tokens: TokenFactory, client: httpx.AsyncClient, redis_url: str
) -> None:
    hub = hub_of(api)
    baseline = hub.watcher_count
    job_id = await submit(client)
    token = tokens.issue(sub="sam")
    sockets = [await watch(api, token, job_id) for _ in range(20)]
    for socket in sockets:
        assert (await socket.receive())["payload"]["data"]["jobUpdated"]["status"] == "PENDING"

    assert hub.watcher_count == baseline + 20
    assert event_connections(redis_url) == 1

    for socket in sockets[:10]:
        await socket.stop()
    for socket in sockets[10:]:
        await socket.close()
    for _ in range(200):
        if hub.watcher_count == baseline:
            break
        await asyncio.sleep(0.01)
    assert hub.watcher_count == baseline
    assert event_connections(redis_url) == 1
