"""Several ComfyUI servers from one worker: who is reachable, and a server marked down coming back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from comfy.servers import ComfyServers
from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.proxy import free_port


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, connect=1)) as client:
        yield client


async def started(servers: ComfyServers) -> ComfyServers:
    await servers.start()
    assert await servers.wait_connected(within=10)
    return servers


async def test_only_servers_with_an_open_socket_are_reachable(
    comfy: ComfyEmulatorHandle, http: httpx.AsyncClient
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    servers = await started(ComfyServers([nobody, comfy.url], http=http, worker_id="w"))
    try:
        assert servers.reachable() == [comfy.url]
    finally:
        await servers.close()


async def test_each_server_gets_its_own_stable_client_id(comfy: ComfyEmulatorHandle, http: httpx.AsyncClient) -> None:
    servers = ComfyServers([f"http://127.0.0.1:{free_port()}", comfy.url], http=http, worker_id="worker-7")
    assert [servers.client(url).client_id for url in servers.urls] == ["worker-7-0", "worker-7-1"]


async def test_a_server_marked_down_gets_no_job_until_it_answers_again(
    comfy: ComfyEmulatorHandle, http: httpx.AsyncClient
) -> None:
    servers = await started(ComfyServers([comfy.url], http=http, worker_id="w", probe_interval=0.05))
    try:
        comfy.kill()
        servers.mark_down(comfy.url, reason="test")
        assert servers.reachable() == []
        assert [state.up for state in servers.states()] == [False]
        comfy.start()
        async with asyncio.timeout(15):
            while servers.reachable() != [comfy.url]:  # noqa: ASYNC110 - the probe has no event of its own
                await asyncio.sleep(0.05)
    finally:
        await servers.close()


def test_no_server_at_all_is_a_configuration_error(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ComfyServers([], http=http, worker_id="w")
