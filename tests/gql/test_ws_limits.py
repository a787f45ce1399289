"""Websocket limits, on both protocols: the init timeout, nothing before `connection_init`, the
message size cap, the subscription cap, and a socket that lives no longer than its token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed

from gql.auth import JwksCache, JwtVerifier
from gql.router import MAX_SUBSCRIPTIONS_PER_CONNECTION, create_graphql_router
from gql.schema import create_schema
from gql.sockets import MAX_WS_MESSAGE_BYTES
from tests.fixtures import images
from tests.fixtures.jwks import TEST_AUDIENCE, TEST_ISSUER, JwksServer, TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.services import ApiServer
from tests.gql.helpers import post_photo
from tests.gql.ws import JOB_UPDATED, LEGACY_WS, TRANSPORT_WS, GraphQLSocket

BOTH = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
# Short enough for a quick test, long enough that a loaded machine still inits in time.
TEST_INIT_TIMEOUT = timedelta(seconds=1)


@contextlib.asynccontextmanager
async def serving(api: ApiServer, *, verifier: JwtVerifier | None = None) -> AsyncIterator[str]:
    """Our GraphQL router, with the test init timeout, on its own loopback port, sharing the
    session API's services (optionally with another verifier)."""
    services = api.app.state.services  # type: ignore[attr-defined]
    app = FastAPI()
    app.state.services = services if verifier is None else dataclasses.replace(services, verifier=verifier)
    app.include_router(
        create_graphql_router(create_schema(), allowed_origins=[], connection_init_timeout=TEST_INIT_TIMEOUT),
        prefix="/graphql",
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn has no start event to await
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def url(api: ApiServer) -> AsyncIterator[str]:
    async with serving(api) as url:
        yield url


@pytest.fixture
async def job_id(api: ApiServer, tokens: TokenFactory, s3_server) -> str:
    """A pending job of sam's (no worker runs here, so it stays pending)."""
    s3_server.reset()
    async with api.client(tokens.issue(sub="sam")) as client:
        response = await post_photo(client, images.jpeg_bytes(64, 48))
    assert response.status_code == 202
    job: str = response.json()["id"]
    return job


@dataclasses.dataclass
class Closed:
    code: int | None
    reason: str
    messages: list[dict[str, Any]]  # what arrived before the close


async def until_closed(socket: GraphQLSocket, *, within: float = 10) -> Closed:
    messages = []
    async with asyncio.timeout(within):
        try:
            while True:
                messages.append(json.loads(await socket.connection.recv()))
        except ConnectionClosed as closed:
            frame = closed.rcvd
    return Closed(frame.code if frame else None, frame.reason if frame else "", messages)


async def not_found_answer(socket: GraphQLSocket, query: str) -> bool:
    """Whether the socket still serves: a `jobUpdated` of a job that does not exist is answered
    with one NOT_FOUND error, then completes."""
    operation_id = str(uuid.uuid4())
    await socket.subscribe(query, {"id": str(uuid.uuid4())}, operation_id=operation_id)
    [answer] = await socket.results(operation_id=operation_id)
    errors = answer if isinstance(answer, list) else answer["errors"]  # transport-ws: a list
    return bool(errors[0]["extensions"]["code"] == "NOT_FOUND")


async def authenticated(url: str, token: str, protocol: str) -> GraphQLSocket:
    socket = await GraphQLSocket.open(url, protocol=protocol)
    assert (await socket.init({"Authorization": f"Bearer {token}"}))["type"] == "connection_ack"
    return socket


@BOTH
async def test_a_socket_that_never_sends_connection_init_is_closed_after_the_init_timeout(
    url: str, protocol: str
) -> None:
    opened = time.monotonic()
    socket = await GraphQLSocket.open(url, protocol=protocol)

    closed = await until_closed(socket)

    assert closed.code == 4408
    assert TEST_INIT_TIMEOUT.total_seconds() * 0.9 <= time.monotonic() - opened < TEST_INIT_TIMEOUT.total_seconds() + 2


@BOTH
async def test_a_socket_that_sent_connection_init_outlives_the_init_timeout(
    url: str, tokens: TokenFactory, job_id: str, protocol: str
) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), protocol)
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    assert (await socket.receive())["payload"]["data"]["jobUpdated"]["status"] == "PENDING"

    # The init timeout passes while the socket waits for news of the job: nothing closes it.
    with pytest.raises(TimeoutError):
        await socket.receive(wait=TEST_INIT_TIMEOUT.total_seconds() + 1)
    assert await not_found_answer(socket, JOB_UPDATED)
    await socket.close()


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        (TRANSPORT_WS, {"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
        (TRANSPORT_WS, {"type": "ping"}),
        (TRANSPORT_WS, "not json at all"),
        (LEGACY_WS, {"id": "1", "type": "start", "payload": {"query": "{ __typename }"}}),
        (LEGACY_WS, {"id": "1", "type": "stop"}),
        (LEGACY_WS, {"type": "no-such-type"}),
        (LEGACY_WS, "not json at all"),
        (LEGACY_WS, [1, 2, 3]),
    ],
    ids=lambda value: value if isinstance(value, str) else json.dumps(value)[:40],
)
async def test_a_message_before_connection_init_closes_the_socket(url: str, protocol: str, message: Any) -> None:
    socket = await GraphQLSocket.open(url, protocol=protocol)
    await socket.connection.send(message if isinstance(message, str) else json.dumps(message))

    closed = await until_closed(socket, within=TEST_INIT_TIMEOUT.total_seconds() / 2)

    # transport-ws: a non-JSON message is 4400 (its spec), anything else before init 4401.
    assert closed.code in ((4400,) if message == "not json at all" and protocol == TRANSPORT_WS else (4401,))
    assert closed.messages == []


@BOTH
async def test_an_oversized_message_closes_the_socket(url: str, tokens: TokenFactory, protocol: str) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), protocol)
    query = "{ __typename }" + " " * MAX_WS_MESSAGE_BYTES
    await socket.send(
        {"id": "1", "type": "subscribe" if protocol == TRANSPORT_WS else "start", "payload": {"query": query}}
    )

    closed = await until_closed(socket)

    assert closed.code == 1009
    assert str(MAX_WS_MESSAGE_BYTES) in closed.reason
    assert closed.messages == []


@BOTH
async def test_an_oversized_first_message_closes_the_socket_before_any_authentication(url: str, protocol: str) -> None:
    socket = await GraphQLSocket.open(url, protocol=protocol)
    await socket.send({"type": "connection_init", "payload": {"junk": "x" * (MAX_WS_MESSAGE_BYTES + 1)}})

    assert (await until_closed(socket)).code == 1009


@BOTH
async def test_a_message_just_under_the_size_cap_is_served(url: str, tokens: TokenFactory, protocol: str) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), protocol)
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    message = {"id": "1", "type": kind, "payload": {"query": JOB_UPDATED, "variables": {"id": str(uuid.uuid4())}}}
    message["payload"]["query"] += " " * (MAX_WS_MESSAGE_BYTES - len(json.dumps(message)))
    assert len(json.dumps(message).encode()) == MAX_WS_MESSAGE_BYTES
    await socket.send(message)

    [answer] = await socket.results()
    errors = answer if isinstance(answer, list) else answer["errors"]
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    await socket.close()


@BOTH
async def test_a_malformed_operation_closes_the_socket(url: str, tokens: TokenFactory, protocol: str) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), protocol)
    await socket.send({"id": "1", "type": "subscribe" if protocol == TRANSPORT_WS else "start", "payload": "{ x }"})

    assert (await until_closed(socket)).code == 4400


async def test_a_message_that_is_not_an_object_closes_a_transport_ws_socket(url: str, tokens: TokenFactory) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), TRANSPORT_WS)
    await socket.connection.send("[1, 2, 3]")

    assert (await until_closed(socket)).code == 4400


@BOTH
async def test_subscriptions_beyond_the_per_socket_cap_are_refused(
    url: str, tokens: TokenFactory, job_id: str, protocol: str
) -> None:
    socket = await authenticated(url, tokens.issue(sub="sam"), protocol)
    for n in range(MAX_SUBSCRIPTIONS_PER_CONNECTION):
        await socket.subscribe(JOB_UPDATED, {"id": job_id}, operation_id=str(n))
    first_states = [await socket.receive() for _ in range(MAX_SUBSCRIPTIONS_PER_CONNECTION)]
    assert {message["type"] for message in first_states} == {"next" if protocol == TRANSPORT_WS else "data"}

    await socket.subscribe(JOB_UPDATED, {"id": job_id}, operation_id="one-too-many")
    refusal = await socket.receive()

    assert (refusal["id"], refusal["type"]) == ("one-too-many", "error")
    assert "limit" in json.dumps(refusal["payload"]).lower()
    await socket.close()


@BOTH
async def test_a_live_subscription_ends_when_its_token_expires(
    url: str, tokens: TokenFactory, job_id: str, protocol: str
) -> None:
    token = tokens.issue(sub="sam", exp_in=2)
    expires_at = json.loads(_claims(token))["exp"]
    socket = await authenticated(url, token, protocol)
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    assert (await socket.receive())["payload"]["data"]["jobUpdated"]["status"] == "PENDING"

    closed = await until_closed(socket, within=5)

    assert closed.code == 4403
    assert closed.reason == "token expired"
    assert expires_at - 0.1 <= time.time() < expires_at + 2
    if protocol == LEGACY_WS:
        assert closed.messages[-1] == {"type": "connection_error", "payload": {"message": "token expired"}}


@BOTH
async def test_an_operation_on_a_socket_whose_token_has_expired_is_refused(
    api: ApiServer, jwks_server: JwksServer, tokens: TokenFactory, job_id: str, protocol: str
) -> None:
    # A verifier with leeway lets a token already past its `exp` open the socket: the socket
    # itself holds to `exp`, so nothing is served on it.
    async with httpx.AsyncClient(timeout=5) as http:
        lenient = JwtVerifier(
            jwks=JwksCache(jwks_url=jwks_server.url, http=http), audience=TEST_AUDIENCE, issuer=TEST_ISSUER, leeway=60
        )
        async with serving(api, verifier=lenient) as url:
            socket = await GraphQLSocket.open(url, protocol=protocol)
            await socket.send(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {tokens.issue(sub='sam', exp_in=-5)}"},
                }
            )
            await socket.subscribe(JOB_UPDATED, {"id": job_id})

            closed = await until_closed(socket)

    assert closed.code == 4403
    assert not [message for message in closed.messages if message["type"] in ("next", "data")]


def _claims(token: str) -> bytes:
    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
