"""MAX_PENDING_JOBS_PER_USER: a user who already has that many jobs pending gets 429 with
Retry-After (GraphQL: TOO_MANY_REQUESTS), and nothing is stored or queued; other users are not
affected. No worker runs here, so submitted jobs stay pending."""

from __future__ import annotations

from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.gql.helpers import graphql_upload
from tests.system.faults.harness import Cluster, Rows, api_client, post_photo, queue_of, submit


async def test_a_user_at_the_pending_ceiling_gets_429_and_others_still_submit(
    cluster: Cluster, rows: Rows, s3_server: S3ServerHandle, tokens: TokenFactory, client_factory
) -> None:
    await cluster.start_api(MAX_PENDING_JOBS_PER_USER="2")
    client = client_factory(cluster.api_url)
    await submit(client)
    await submit(client)
    objects, jobs = s3_server.keys(), await rows.count()

    refused = await post_photo(client)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert "2 jobs waiting" in refused.json()["detail"]
    answer = await graphql_upload(client, images.jpeg_bytes(64, 48))
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "TOO_MANY_REQUESTS"}, error
    assert s3_server.keys() == objects
    assert await rows.count() == jobs
    assert queue_of(cluster.env["REDIS_URL"]).pending_count() == 2

    async with api_client(cluster.api_url, tokens.issue(sub="someone-else")) as other:
        assert (await post_photo(other)).status_code == 202


async def test_without_the_setting_there_is_no_per_user_ceiling(cluster: Cluster, client_factory) -> None:
    await cluster.start_api()
    client = client_factory(cluster.api_url)
    for _ in range(5):
        await submit(client)
