"""Every ComfyUI server a worker may send jobs to: one client (and websocket) each, and their health.

A server is reachable while this worker's websocket to it is open and it has not failed an HTTP
call since. A server that refuses connections drops the socket (the client reconnects with
backoff: that is the background probe); one that fails a call is marked down and probed over
HTTP until it answers again. Each client has a stable id per worker and server, so a reconnect
keeps ComfyUI's routing of our prompts' events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from comfy.client import ComfyClient

log = logging.getLogger("restore.comfy")

# How often a server marked down is asked whether it answers again.
PROBE_INTERVAL_SECONDS = 1.0
# How often every server is asked anyway: a server whose socket stays open but which stopped
# answering HTTP is marked down by this check; the answer's latency is what metrics show.
CHECK_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class ServerState:
    url: str
    up: bool
    down_since: float | None
    latency: float | None


class ComfyServers:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        http: httpx.AsyncClient,
        worker_id: str,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        poll_interval: float | None = None,
        outage_grace: float | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one ComfyUI server is needed")
        options: dict[str, float] = {}
        if poll_interval is not None:
            options["poll_interval"] = poll_interval
        if outage_grace is not None:
            options["outage_grace"] = outage_grace
        self._clients = {
            url: ComfyClient(base_url=url, http=http, client_id=f"{worker_id}-{number}", **options)
            for number, url in enumerate(urls)
        }
        self._probe_interval = probe_interval
        self._check_interval = check_interval
        self._down_since: dict[str, float] = {}
        self._latency: dict[str, float] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._checker: asyncio.Task[None] | None = None

    @property
    def urls(self) -> list[str]:
        return list(self._clients)

    def client(self, url: str) -> ComfyClient:
        return self._clients[url]

    async def start(self) -> None:
        for client in self._clients.values():
            await client.start()
        self._checker = asyncio.create_task(self._check_forever(), name="comfy-checks")

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.wait([self._checker])
            self._checker = None
        for probe in self._probes.values():
            probe.cancel()
        if self._probes:
            await asyncio.wait(list(self._probes.values()))
        self._probes.clear()
        for client in self._clients.values():
            await client.close()

    async def wait_connected(self, *, within: float) -> bool:
        """Whether at least one server's socket opened within `within` seconds."""
        waits = [asyncio.ensure_future(client.connected.wait()) for client in self._clients.values()]
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return bool(done)

    def reachable(self) -> list[str]:
        """The servers a job may be sent to now (safe to call from any thread)."""
        down = self._down_since
        return [url for url, client in self._clients.items() if client.connected.is_set() and url not in down]

    def states(self) -> list[ServerState]:
        reachable = set(self.reachable())
        return [
            ServerState(url, url in reachable, self._down_since.get(url), self._latency.get(url))
            for url in self._clients
        ]

    def mark_down(self, url: str, *, reason: str) -> None:
        """Send `url` no new job until it answers again (it is probed in the background)."""
        if url in self._down_since:
            return
        self._down_since[url] = time.monotonic()
        log.warning("restore.comfy.server_down", extra={"server": url, "reason": reason})
        self._probes[url] = asyncio.create_task(self._probe(url), name=f"comfy-probe-{url}")

    async def check(self, url: str) -> bool:
        """Ask the server now; a server that does not answer is marked down."""
        started = time.monotonic()
        answered = await self._clients[url].ping()
        if answered:
            self._latency[url] = time.monotonic() - started
        elif self._clients[url].connected.is_set():
            self.mark_down(url, reason="does not answer HTTP")
        return answered

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            for url in self.urls:
                if url not in self._down_since:
                    await self.check(url)

    async def _probe(self, url: str) -> None:
        client = self._clients[url]
        try:
            while not await client.ping():  # noqa: ASYNC110 - polling a remote server, no local event exists
                await asyncio.sleep(self._probe_interval)
        finally:
            with contextlib.suppress(KeyError):
                del self._probes[url]
        down_for = time.monotonic() - self._down_since.pop(url, time.monotonic())
        log.info("restore.comfy.server_up", extra={"server": url, "down_seconds": round(down_for, 3)})
