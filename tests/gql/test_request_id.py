"""Every API response names its request id (the client's `X-Request-ID`, or one made up), and every
line the API logs while serving the request carries it."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from huey import RedisHuey

from app import create_app
from gql.requestid import MAX_REQUEST_ID_LENGTH, RequestIdFilter
from gql.uploads import MAX_OPERATION_BYTES
from settings import Settings
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import post_photo
from tests.gql.ws import GraphQLSocket
from workflows.binding import Workflow

GENERATED = re.compile(r"[0-9a-f]{32}")
WEB_ORIGIN = "https://photos.example"
A_JOB = "/api/v1/restoration/jobs/00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def anonymous(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as client:
        yield client


@pytest.fixture
async def alice(
    api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey
) -> AsyncIterator[httpx.AsyncClient]:
    s3_server.reset()
    async with api.client(tokens.issue(sub="alice")) as client:
        yield client


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The API's log records, passed through the same filter as the processes' log handler."""
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="restore")
    return caplog


async def test_given_request_id_is_echoed(alice: httpx.AsyncClient) -> None:
    response = await alice.get("/healthz", headers={"X-Request-ID": "trace-42/abc:def"})

    assert response.headers["x-request-id"] == "trace-42/abc:def"


async def test_request_id_is_generated_when_absent(alice: httpx.AsyncClient) -> None:
    first = (await alice.get("/healthz")).headers["x-request-id"]
    second = (await alice.get("/healthz")).headers["x-request-id"]

    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "given",
    ["", "has space", "x" * (MAX_REQUEST_ID_LENGTH + 1), "tab\tinside", "ümlaut"],
    ids=["empty", "space", "too-long", "control-char", "non-ascii"],
)
async def test_unusable_request_id_is_replaced_by_a_generated_one(alice: httpx.AsyncClient, given: str) -> None:
    response = await alice.get("/healthz", headers={b"X-Request-ID": given.encode()})

    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_longest_accepted_request_id_is_kept(alice: httpx.AsyncClient) -> None:
    longest = "x" * MAX_REQUEST_ID_LENGTH

    assert (await alice.get("/healthz", headers={"X-Request-ID": longest})).headers["x-request-id"] == longest


async def test_unauthenticated_response_carries_the_request_id(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get(A_JOB, headers={"X-Request-ID": "no-token-1"})

    assert response.status_code == 401
    assert response.headers["x-request-id"] == "no-token-1"


async def test_body_limit_refusal_carries_the_request_id(alice: httpx.AsyncClient) -> None:
    response = await alice.post(
        "/graphql",
        content=b"{" + b" " * MAX_OPERATION_BYTES + b"}",
        headers={"Content-Type": "application/json", "X-Request-ID": "too-big-1"},
    )

    assert response.status_code == 413
    assert response.headers["x-request-id"] == "too-big-1"


async def test_accepted_upload_carries_the_request_id(alice: httpx.AsyncClient) -> None:
    response = await alice.post(
        "/api/v1/restoration/restore",
        files={"file": ("a.jpg", images.jpeg_bytes(), "image/jpeg")},
        headers={"X-Request-ID": "upload-1"},
    )

    assert response.status_code == 202
    assert response.headers["x-request-id"] == "upload-1"


async def test_websocket_handshake_carries_the_request_id(api: ApiServer) -> None:
    socket = await GraphQLSocket.open(api.url, headers={"X-Request-ID": "socket-1"})
    try:
        assert socket.connection.response is not None
        assert socket.connection.response.headers["X-Request-ID"] == "socket-1"
    finally:
        await socket.connection.close()


async def test_log_lines_of_a_request_carry_its_id(alice: httpx.AsyncClient, records: pytest.LogCaptureFixture) -> None:
    response = await post_photo(alice, images.jpeg_bytes())
    request_id = response.headers["x-request-id"]
    job_id = response.json()["id"]

    [submitted] = [record for record in records.records if record.getMessage() == "restore.submitted"]
    assert str(submitted.job_id) == job_id  # type: ignore[attr-defined]
    assert submitted.user == "alice"  # type: ignore[attr-defined]
    assert submitted.request_id == request_id  # type: ignore[attr-defined]


async def test_lines_logged_outside_a_request_carry_no_request_id(records: pytest.LogCaptureFixture) -> None:
    logging.getLogger("restore.api").info("test.outside_a_request")

    [record] = [record for record in records.records if record.getMessage() == "test.outside_a_request"]
    assert not hasattr(record, "request_id")


@pytest.fixture
async def browser_facing(settings: Settings, workflow: Workflow) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an allowed web origin; CORS answers need no lifespan, so none is run."""
    app = create_app(settings.model_copy(update={"cors_origins": WEB_ORIGIN}), workflow)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        yield client


async def test_a_web_page_may_send_a_request_id(browser_facing: httpx.AsyncClient) -> None:
    preflight = await browser_facing.options(
        "/healthz",
        headers={
            "Origin": WEB_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-request-id",
        },
    )

    assert preflight.status_code == 200
    assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()


async def test_a_web_page_may_read_the_request_id(browser_facing: httpx.AsyncClient) -> None:
    response = await browser_facing.get("/healthz", headers={"Origin": WEB_ORIGIN, "X-Request-ID": "page-1"})

    assert response.headers["x-request-id"] == "page-1"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
