"""API replicas: two `restoration api` processes on one Redis serve one deployment."""

from __future__ import annotations

import asyncio
import time

from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.gql.ws import JOB_UPDATED, GraphQLSocket
from tests.system.faults.harness import Cluster, submit
from tests.system.scale.helpers import Emulators


async def test_a_subscription_on_one_api_sees_a_job_submitted_through_another_complete(
    cluster: Cluster, emulators: Emulators, tokens: TokenFactory, user_client
) -> None:
    [comfy] = await emulators.start(1, service_time=0.1)
    ports = free_port(), free_port()
    await asyncio.gather(*(cluster.start_api(port=port, COMFYUI_URL=comfy.url) for port in ports))
    first, second = (f"http://127.0.0.1:{port}" for port in ports)

    # No worker yet: the job waits, so everything after PENDING reaches API #1 as a change.
    job_id = await submit(user_client(second, "replica-rita"))
    socket = await GraphQLSocket.open(first)
    try:
        init = await socket.init({"Authorization": f"Bearer {tokens.issue(sub='replica-rita')}"})
        assert init["type"] == "connection_ack", init
        await socket.subscribe(JOB_UPDATED, {"id": job_id})
        statuses = [(await socket.receive())["payload"]["data"]["jobUpdated"]["status"]]
        assert statuses == ["PENDING"]

        await cluster.start_worker(COMFYUI_URL=comfy.url)
        deadline = time.monotonic() + 30
        while statuses[-1] not in ("COMPLETED", "FAILED"):
            message = await socket.receive(wait=max(0.1, deadline - time.monotonic()))
            statuses.append(message["payload"]["data"]["jobUpdated"]["status"])
    finally:
        await socket.close()

    assert statuses[-1] == "COMPLETED", (statuses, cluster.logs())
    assert "PROCESSING" in statuses, statuses
