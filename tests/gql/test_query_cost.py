"""The cost limit counts list items (the sum of `first`, aliases and fragments included) and
refuses an operation over it before anything runs, with a BAD_USER_INPUT error naming the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gql.cost import MAX_LIST_ITEMS
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer
from tests.gql.ws import TRANSPORT_WS, GraphQLSocket

PAGE = "pageInfo { hasNextPage }"


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(tokens.issue(sub="cost")) as client:
        yield client


async def answer(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def aliased(count: int, first: int | str) -> str:
    return " ".join(f"a{n}: jobs(first: {first}) {{ {PAGE} }}" for n in range(count))


def cost_error(body: dict[str, Any]) -> dict[str, Any]:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    return dict(error)


async def test_fifteen_aliased_full_pages_are_refused_naming_the_limit(client: httpx.AsyncClient) -> None:
    body = await answer(client, "{ " + aliased(15, 100) + " }")

    error = cost_error(body)
    assert body.get("data") is None
    assert f"the limit is {MAX_LIST_ITEMS}" in error["message"]
    assert "1500" in error["message"]
    assert error["extensions"]["limit"] == MAX_LIST_ITEMS


async def test_pages_adding_up_to_the_limit_are_served(client: httpx.AsyncClient) -> None:
    body = await answer(client, "{ " + aliased(MAX_LIST_ITEMS // 100, 100) + " }")

    assert "errors" not in body
    assert len(body["data"]) == MAX_LIST_ITEMS // 100


async def test_one_item_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    query = "{ " + aliased(MAX_LIST_ITEMS // 100, 100) + " extra: jobs(first: 1) { " + PAGE + " } }"

    cost_error(await answer(client, query))


async def test_omitted_first_counts_as_the_schema_default(client: httpx.AsyncClient) -> None:
    # 15 aliases are allowed; at the default page size of 20 that is 300 jobs, well within.
    fifteen_defaults = " ".join(f"a{n}: jobs {{ {PAGE} }}" for n in range(15))
    assert "errors" not in await answer(client, "{ " + fifteen_defaults + " }")

    # 6 pages of 80 and 1 of 20 (the default) = 500 passes; one more default page does not.
    base = aliased(6, 80)
    assert "errors" not in await answer(client, "{ " + base + " d: jobs { " + PAGE + " } }")
    cost_error(await answer(client, "{ " + base + " d: jobs { " + PAGE + " } e: jobs { " + PAGE + " } }"))


async def test_first_given_by_variables_is_counted(client: httpx.AsyncClient) -> None:
    query = "query($n: Int) { " + aliased(6, "$n") + " }"

    assert "errors" not in await answer(client, query, n=80)
    cost_error(await answer(client, query, n=100))


async def test_a_variables_default_is_counted(client: httpx.AsyncClient) -> None:
    cost_error(await answer(client, "query($n: Int = 100) { " + aliased(6, "$n") + " }"))


async def test_fragments_count_wherever_they_are_spread(client: httpx.AsyncClient) -> None:
    fragment = "fragment Pages on Query { " + aliased(3, 100) + " }"
    spread_twice = "{ ...Pages x: jobs(first: 1) { " + PAGE + " } ... on Query { ...Pages } } " + fragment

    error = cost_error(await answer(client, spread_twice))
    assert "601" in error["message"]


async def test_nothing_runs_when_the_operation_is_refused(client: httpx.AsyncClient, pg_proxy) -> None:
    # With the database away, an operation that ran would fail SERVICE_UNAVAILABLE.
    await pg_proxy.cut()
    try:
        body = await answer(client, "{ " + aliased(15, 100) + " }")
    finally:
        await pg_proxy.restore()

    cost_error(body)


async def test_only_the_named_operation_is_counted(client: httpx.AsyncClient) -> None:
    document = "query Small { jobs(first: 1) { " + PAGE + " } } query Big { " + aliased(6, 100) + " }"
    response = await client.post("/graphql", json={"query": document, "operationName": "Small"})

    assert "errors" not in response.json()


async def test_an_enormous_first_literal_is_refused_not_a_crash(client: httpx.AsyncClient) -> None:
    body = await answer(client, "{ jobs(first: " + "9" * 5000 + ") { " + PAGE + " } }")

    assert body["errors"]
    assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert all("internal" not in error["message"] for error in body["errors"])


async def test_the_limit_holds_over_websockets_too(api: ApiServer, tokens: TokenFactory) -> None:
    socket = await GraphQLSocket.open(api.url, protocol=TRANSPORT_WS)
    assert (await socket.init({"Authorization": f"Bearer {tokens.issue(sub='cost')}"}))["type"] == "connection_ack"
    await socket.subscribe("{ " + aliased(15, 100) + " }", {})

    refusal = await socket.receive()
    await socket.close()

    assert refusal["type"] == "error"  # graphql-transport-ws ends the operation with it
    errors = refusal["payload"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"the limit is {MAX_LIST_ITEMS}" in errors[0]["message"]
