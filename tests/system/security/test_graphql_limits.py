"""GraphQL limits: deep, wide, huge or batched operations are refused; errors never leak internals."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fixtures.jwks import TokenFactory
from tests.fixtures.services import ApiServer


@pytest.fixture
async def client(api: ApiServer, tokens: TokenFactory):
    async with api.client(tokens.issue(sub="limits")) as client:
        yield client


async def errors_of(client: httpx.AsyncClient, query: str) -> list[dict]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    return response.json().get("errors", [])


async def test_a_query_deeper_than_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    assert await errors_of(client, "{ jobs { edges { node { id } } } }") == []
    too_deep = "{ jobs { edges { node { id { a { b { c { d { e { f } } } } } } } } } }"
    messages = [error["message"] for error in await errors_of(client, too_deep)]
    assert any("exceeds maximum operation depth" in message for message in messages)


async def test_too_many_aliases_are_refused(client: httpx.AsyncClient) -> None:
    aliases = " ".join(f"a{n}: jobs(first: 1) {{ pageInfo {{ hasNextPage }} }}" for n in range(16))
    [error] = await errors_of(client, "{ " + aliases + " }")
    assert "aliases" in error["message"].lower()


async def test_an_oversized_document_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    padding = "# " + "x" * 70_000 + "\n"
    response = await client.post("/graphql", json={"query": padding + "{ jobs { edges { cursor } } }"})
    assert response.status_code == 413


async def test_too_many_tokens_are_refused(client: httpx.AsyncClient) -> None:
    fields = " ".join(["__typename"] * 3000)
    errors = await errors_of(client, "{ " + fields + " }")
    assert errors
    assert "token" in errors[0]["message"].lower()


async def test_batched_operations_are_refused(client: httpx.AsyncClient) -> None:
    batch = [{"query": "{ jobs { edges { cursor } } }"}] * 2
    response = await client.post("/graphql", content=json.dumps(batch), headers={"content-type": "application/json"})
    assert response.status_code == 400


async def test_errors_carry_no_traceback_sql_or_storage_internals(client: httpx.AsyncClient, pg_proxy) -> None:
    await pg_proxy.cut()
    try:
        response = await client.post("/graphql", json={"query": "{ jobs { edges { cursor } } }"})
    finally:
        await pg_proxy.restore()
    text = response.text
    for leak in ("Traceback", "SELECT", "asyncpg", "restoration_jobs", "botocore", 'File "'):
        assert leak not in text
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 30_000 + "]" * 30_000,
        '{"query": "{ __typename }", "variables": {"v": ' + "[" * 30_000 + "]" * 30_000 + "}}",
    ],
    ids=["document", "variables"],
)
async def test_json_nested_beyond_the_recursion_limit_is_a_400(client: httpx.AsyncClient, body: str) -> None:
    response = await client.post("/graphql", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert "JSON" in response.text


async def test_a_subscription_sent_as_an_http_post_is_a_400_naming_websockets(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": 'subscription { jobUpdated(id: "x") { id } }'})

    assert response.status_code == 400
    assert "websocket" in response.text


async def test_a_subscription_sent_as_an_http_get_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": 'subscription { jobUpdated(id: "x") { id } }'})

    assert response.status_code == 400


async def test_queries_over_http_are_still_served_by_post_and_get(client: httpx.AsyncClient) -> None:
    query = "{ jobs(first: 1) { pageInfo { hasNextPage } } }"
    for response in (
        await client.post("/graphql", json={"query": query}),
        await client.get("/graphql", params={"query": query}),
    ):
        assert response.status_code == 200
        assert response.json()["data"]["jobs"]["pageInfo"]["hasNextPage"] in (True, False)
