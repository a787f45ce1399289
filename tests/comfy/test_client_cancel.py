"""`ComfyClient.cancel` against the ComfyUI double: it withdraws OUR prompt only — interrupted
while it runs, deleted while it waits — and sends nothing when ComfyUI no longer has it, so another
client's running prompt is never stopped (older servers ignore `/interrupt`'s prompt id)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from comfy.client import ComfyClient, Withdrawal
from tests.comfy.helpers import restore_workflow, upload
from tests.fixtures.comfy import ComfyEmulatorHandle


@pytest.fixture
async def http(comfy: ComfyEmulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=comfy.url, timeout=10.0) as client:
        assert (await upload(client, "input.png")).status_code == 200
        yield client


@pytest.fixture
def client(comfy: ComfyEmulatorHandle, http: httpx.AsyncClient) -> ComfyClient:
    return ComfyClient(base_url=comfy.url, http=http, client_id="our-worker")


async def post(http: httpx.AsyncClient, prompt_id: str, client_id: str) -> None:
    graph = restore_workflow(prefix=f"misc/{prompt_id}")
    response = await http.post("/prompt", json={"prompt": graph, "prompt_id": prompt_id, "client_id": client_id})
    assert response.status_code == 200, response.text


async def until_running(http: httpx.AsyncClient, prompt_id: str) -> None:
    deadline = time.monotonic() + 10
    while prompt_id not in [item[1] for item in (await http.get("/queue")).json()["queue_running"]]:
        assert time.monotonic() < deadline, f"{prompt_id} never ran"
        await asyncio.sleep(0.02)


async def test_a_running_prompt_is_interrupted_by_its_id(
    comfy: ComfyEmulatorHandle, http: httpx.AsyncClient, client: ComfyClient
) -> None:
    await comfy.set_faults(mode="hang", times=1)
    await post(http, "ours", "our-worker")
    await until_running(http, "ours")

    assert await client.cancel("ours") is Withdrawal.INTERRUPTED

    state = await comfy.state()
    assert state["interrupts"] == [{"prompt_id": "ours", "running": ["ours"], "applied": True}]
    assert state["queue_deletes"] == []
    assert (await comfy.wait_for_history("ours"))["status"]["messages"][-1][0] == "execution_interrupted"


async def test_a_waiting_prompt_is_deleted_and_the_running_one_spared(
    comfy: ComfyEmulatorHandle, http: httpx.AsyncClient, client: ComfyClient
) -> None:
    await comfy.set_faults(mode="hang", times=1)
    await post(http, "theirs", "another-app")
    await until_running(http, "theirs")
    await post(http, "ours", "our-worker")

    assert await client.cancel("ours") is Withdrawal.DELETED

    state = await comfy.state()
    assert (state["queue_deletes"], state["interrupts"]) == (["ours"], [])
    assert state["queue"] == {"running": ["theirs"], "pending": []}


@pytest.mark.parametrize("other_running", [False, True])
async def test_a_prompt_comfyui_no_longer_has_gets_nothing_sent(
    comfy: ComfyEmulatorHandle, http: httpx.AsyncClient, client: ComfyClient, other_running: bool
) -> None:
    await post(http, "ours", "our-worker")
    await comfy.wait_for_history("ours")  # finished
    if other_running:
        await comfy.set_faults(mode="hang", times=1)
        await post(http, "theirs", "another-app")
        await until_running(http, "theirs")

    assert await client.cancel("ours") is Withdrawal.ABSENT

    state = await comfy.state()
    assert (state["queue_deletes"], state["interrupts"]) == ([], [])
