"""What the scale tests run and observe: ComfyUI emulators on their own ports, jobs as the API
shows them, prompts as each ComfyUI server saw them, and a worker's per-server metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.comfy import ComfyEmulatorHandle
from tests.fixtures.proxy import free_port
from tests.system.faults.harness import POLL, Rows, submit, wait_terminal

# The sampler's time per prompt: short, so a test's jobs take seconds, but long enough that a
# server's queue holds one prompt while it runs another.
SERVICE_TIME = 0.3


class Emulators:
    """Starts ComfyUI emulators on free ports (each with its own folders); stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self.started: list[ComfyEmulatorHandle] = []

    async def start(self, count: int, *, service_time: float = SERVICE_TIME) -> list[ComfyEmulatorHandle]:
        handles = []
        for _ in range(count):
            root = self._workdir / f"comfy-{len(self.started)}"
            root.mkdir()
            handle = ComfyEmulatorHandle(
                host="127.0.0.1",
                port=free_port(),
                root=root,
                log_path=root / "emulator.log",
                service_time=service_time,
            )
            self.started.append(handle)
            handles.append(handle)
        await asyncio.gather(*(asyncio.to_thread(handle.start) for handle in handles))
        return handles

    def stop_all(self) -> None:
        for handle in self.started:
            handle.kill()


def dead_server() -> str:
    """The URL of a loopback port nobody listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def servers(*urls: str | ComfyEmulatorHandle) -> str:
    """A COMFYUI_URL value listing these servers."""
    return ",".join(url if isinstance(url, str) else url.url for url in urls)


async def submit_many(client: httpx.AsyncClient, count: int) -> list[str]:
    """`count` jobs submitted at once (their ids, in no particular order of arrival)."""
    return list(await asyncio.gather(*(submit(client) for _ in range(count))))


async def all_terminal(client: httpx.AsyncClient, job_ids: list[str], *, within: float) -> list[dict[str, Any]]:
    """Every job, once it is completed or failed (fails after `within` seconds)."""
    ended = await asyncio.gather(*(wait_terminal(client, job_id, within=within) for job_id in job_ids))
    return [job for job, _ in ended]


async def servers_of(rows: Rows, job_ids: list[str]) -> dict[str, str | None]:
    """The ComfyUI server each job was sent to, as its row records it."""
    return {job_id: (await rows.job(job_id))["comfy_server"] for job_id in job_ids}


@dataclass(frozen=True)
class SeenPrompt:
    """One prompt as a ComfyUI server saw it: when it arrived and when the server was done with it
    (both on the server's own clock)."""

    prompt_id: str
    received_at: float
    done_at: float


async def prompts_seen(comfy: ComfyEmulatorHandle) -> list[SeenPrompt]:
    """Every prompt the server accepted, in order of arrival, with the time it ended (from the
    timestamp of the last message in its history entry, i.e. execution_success or _error)."""
    state = await comfy.state()
    seen = []
    async with httpx.AsyncClient(base_url=comfy.url, timeout=5) as client:
        for prompt in state["prompts"]:
            if prompt["http_status"] != 200:
                continue
            prompt_id = prompt["prompt_id"]
            history = (await client.get(f"/history/{prompt_id}")).json()
            assert prompt_id in history, f"{comfy.url} never finished {prompt_id}"
            messages = history[prompt_id]["status"]["messages"]
            done_at = max(data["timestamp"] for _, data in messages) / 1000
            seen.append(SeenPrompt(prompt_id, prompt["received_at"], done_at))
    return sorted(seen, key=lambda p: p.received_at)


def most_at_once(prompts: list[SeenPrompt]) -> int:
    """The largest number of these prompts the server held (queued or running) at one instant.
    A prompt that ended at the instant another arrived does not count as overlapping it."""
    events = [(p.received_at, 1) for p in prompts] + [(p.done_at, -1) for p in prompts]
    held = most = 0
    for _, change in sorted(events):  # at equal times, -1 (an end) sorts before +1 (an arrival)
        held += change
        most = max(most, held)
    return most


async def prompt_ids(comfy: ComfyEmulatorHandle) -> list[str]:
    """The prompts the server accepted since it started (or was reset), in order of arrival."""
    return [p["prompt_id"] for p in (await comfy.state())["prompts"] if p["http_status"] == 200]


async def receiver_of(prompt_id: str, comfies: list[ComfyEmulatorHandle], *, within: float = 15) -> ComfyEmulatorHandle:
    """The server the prompt was sent to (waits until one of them has received it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for comfy in comfies:
            if prompt_id in await prompt_ids(comfy):
                return comfy
        await asyncio.sleep(POLL)
    raise AssertionError(f"no server received {prompt_id} within {within:g} s")


async def server_up(metrics_port: int) -> dict[str, float]:
    """`restoration_comfyui_server_up` per server, from a worker's metrics endpoint."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    return {
        sample.labels["server"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "restoration_comfyui_server_up"
        for sample in family.samples
    }


async def wait_server_up(metrics_port: int, expected: dict[str, float], *, within: float) -> None:
    """Wait until the worker's metrics show exactly `expected` as each server's up value."""
    deadline = time.monotonic() + within
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            seen = await server_up(metrics_port)
        except httpx.TransportError:
            seen = {}
        if seen == expected:
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"server_up is {seen}, not {expected}, after {within:g} s")
