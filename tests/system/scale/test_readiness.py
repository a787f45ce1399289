"""Every ComfyUI server's state, as operators see it: the API's /readyz body and each worker's
`restoration_comfyui_server_up` gauge."""

from __future__ import annotations

import httpx

from tests.fixtures.proxy import free_port
from tests.system.faults.harness import Cluster
from tests.system.scale.helpers import Emulators, dead_server, servers, wait_server_up


async def test_readyz_lists_every_server_with_its_state(cluster: Cluster, emulators: Emulators) -> None:
    [comfy] = await emulators.start(1)
    dead = dead_server()
    await cluster.start_api(COMFYUI_URL=servers(comfy, dead))

    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["comfyui_servers"] == {
        comfy.url: {"state": "ok", "in_flight": 0},
        dead: {"state": "unavailable", "in_flight": 0},
    }, body
    assert body["dependencies"]["comfyui"] == "ok", body


async def test_worker_metrics_show_each_server_up_or_down(cluster: Cluster, emulators: Emulators) -> None:
    [comfy] = await emulators.start(1)
    dead = dead_server()
    metrics_port = free_port()
    await cluster.start_worker(COMFYUI_URL=servers(dead, comfy), WORKER_METRICS_PORT=str(metrics_port))

    await wait_server_up(metrics_port, {comfy.url: 1.0, dead: 0.0}, within=10)
