"""jobsUpdated across an outage of one API replica's Redis connection: two `restoration api`
processes serve one deployment; the one holding the subscription loses Redis (a proxy cut), jobs
submitted through the other replica run to the end meanwhile, and once Redis is back the
subscriber gets each of them in its final state, in the order they finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import TcpProxy, free_port
from tests.gql.ws import GraphQLSocket
from tests.system.faults.harness import Cluster, Process, RedisServer, submit, wait_terminal
from tests.system.scale.helpers import Emulators

JOBS_UPDATED = "subscription { jobsUpdated { id status } }"
USER = "catch-up-cleo"


@pytest.fixture
async def redis_proxy(private_redis: RedisServer) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    await proxy.start()
    yield proxy
    await proxy.cut()


async def logged(process: Process, event: str, *, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while event not in process.log():
        assert time.monotonic() < deadline, f"no {event} in:\n{process.log()[-3000:]}"
        await asyncio.sleep(0.05)


async def test_a_subscriber_gets_the_jobs_another_replica_ran_while_its_redis_was_away(
    cluster: Cluster,
    emulators: Emulators,
    private_redis: RedisServer,
    redis_proxy: TcpProxy,
    tokens: TokenFactory,
    user_client,
) -> None:
    [comfy] = await emulators.start(1, service_time=0.1)
    proxied = f"redis://127.0.0.1:{redis_proxy.port}{urlparse(private_redis.url).path}"
    watched_port, other_port = free_port(), free_port()
    watched = await cluster.start_api(port=watched_port, COMFYUI_URL=comfy.url, REDIS_URL=proxied)
    await cluster.start_api(port=other_port, COMFYUI_URL=comfy.url)
    other = user_client(f"http://127.0.0.1:{other_port}", USER)

    socket = await GraphQLSocket.open(f"http://127.0.0.1:{watched_port}")
    try:
        init = await socket.init({"Authorization": f"Bearer {tokens.issue(sub=USER)}"})
        assert init["type"] == "connection_ack", init
        await socket.subscribe(JOBS_UPDATED, {})
        # No worker yet: a job through the other replica, seen live, proves the subscription is up.
        seen_live = await submit(other)
        first = (await socket.receive())["payload"]["data"]["jobsUpdated"]
        assert first == {"id": seen_live, "status": "PENDING"}

        await redis_proxy.cut()
        await logged(watched, "events.disconnected")
        await cluster.start_worker(COMFYUI_URL=comfy.url)
        ran_meanwhile = await submit(other)
        finished = []
        for job_id in (seen_live, ran_meanwhile):
            job, _ = await wait_terminal(other, job_id, within=30)
            assert job["status"] == "completed", (job, cluster.logs())
            finished.append(job)

        await redis_proxy.restore()
        caught_up = [(await socket.receive(wait=30))["payload"]["data"]["jobsUpdated"] for _ in range(2)]
    finally:
        await socket.close()

    # Caught-up changes come oldest change first; the two jobs may finish in either order.
    in_change_order = sorted(finished, key=lambda job: job["updated_at"])
    assert caught_up == [{"id": job["id"], "status": "COMPLETED"} for job in in_change_order], cluster.logs()
