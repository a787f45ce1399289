"""PostgreSQL taken away from a running API process (its connections dropped, new ones refused):
submits and reads are 503 with Retry-After (GraphQL: SERVICE_UNAVAILABLE), never a 500 or a
traceback, each answered promptly; once the database is reachable again the same process serves
again, without a restart."""

from __future__ import annotations

import time
import uuid

from tests.fixtures.proxy import TcpProxy
from tests.fixtures.s3 import S3ServerHandle
from tests.gql.helpers import graphql
from tests.system.faults.harness import Cluster, pg_url, post_photo, queue_of, read_job, submit, wait_terminal

JOB = "query($id: ID!) { job(id: $id) { id status } }"
JOBS = "{ jobs(first: 5) { edges { node { id status } } } }"
PROMPT = 5.0  # a 503 must not keep the client waiting


async def test_api_answers_503_without_its_database_and_serves_again_when_it_returns(
    cluster: Cluster,
    fresh_database: str,
    pg_proxy: TcpProxy,
    s3_server: S3ServerHandle,
    client_factory,
    record_property,
) -> None:
    await pg_proxy.restore()
    api = await cluster.start_api(DATABASE_URL=pg_url(fresh_database, port=pg_proxy.port))
    await cluster.start_worker()  # the worker reaches PostgreSQL directly
    client = client_factory(cluster.api_url)
    done, _ = await wait_terminal(client, await submit(client), within=15)
    assert done["status"] == "completed", (done, cluster.logs())
    objects = s3_server.keys()

    await pg_proxy.cut()
    try:
        started = time.monotonic()
        refused = await post_photo(client)
        read = await client.get(f"/api/v1/restoration/jobs/{done['id']}")
        one = await graphql(client, JOB, id=done["id"])
        listed = await graphql(client, JOBS)
        seconds = time.monotonic() - started
    finally:
        await pg_proxy.restore()

    record_property("seconds_for_four_refusals", round(seconds, 2))
    for response in (refused, read):
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "database unavailable, please retry shortly"}
    for response in (one, listed):
        assert response.status_code == 200, response.text
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE"}, error
    assert seconds < 4 * PROMPT
    assert s3_server.keys() == objects  # the refused upload left no object behind
    assert queue_of(cluster.env["REDIS_URL"]).pending_count() == 0

    assert (await read_job(client, done["id"]))["status"] == "completed"
    fresh, _ = await wait_terminal(client, await submit(client), within=15)
    assert fresh["status"] == "completed", (fresh, cluster.logs())
    assert api.alive


async def test_a_database_outage_is_not_logged_as_an_unexpected_error(
    cluster: Cluster, fresh_database: str, pg_proxy: TcpProxy, client_factory
) -> None:
    await pg_proxy.restore()
    api = await cluster.start_api(DATABASE_URL=pg_url(fresh_database, port=pg_proxy.port))
    client = client_factory(cluster.api_url)

    await pg_proxy.cut()
    try:
        assert (await client.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}")).status_code == 503
        [error] = (await graphql(client, JOBS)).json()["errors"]
        assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE"}
    finally:
        await pg_proxy.restore()

    logged = api.log()
    assert " ERROR " not in logged, logged[-3000:]
    assert "Traceback" not in logged, logged[-3000:]
