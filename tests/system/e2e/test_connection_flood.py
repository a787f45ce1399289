"""A flood of connections that never finish a request, against a real `restoration dev`.

Each flood connection sends half a request head and then nothing (slowloris). The server must close
every one within its header timeout, stay fast for everyone else meanwhile, and accept and finish
a job submitted during it; idle keep-alive connections are closed too; beyond its connection cap a
request gets 503; and per-connection warnings are not a log storm.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gql.serving import AutoWithHeadDeadline, H11WithHeadDeadline, bind_listener, head_deadline_protocol
from tasks.logs import OncePerInterval
from tests.fixtures import images
from tests.fixtures.proxy import free_port
from tests.system.e2e.test_dev import DevServer, newcomer_env, start_dev, stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Short, so the test is quick; production's default is 10 s.
HEADER_TIMEOUT = 2.0
# What the server may take beyond the timeout to close a connection (timer and loop latency).
CLOSE_MARGIN = 2.0
# Bounded: loopback only, a few hundred sockets.
FLOOD_CONNECTIONS = 300
HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
# uvicorn's idle keep-alive timeout (gql.serving.KEEP_ALIVE_SECONDS).
KEEP_ALIVE = 5.0
# The longest we wait for anything to be closed when it never is (the figure on unfixed code).
GIVE_UP_SECONDS = 15.0


@dataclass(frozen=True)
class Flood:
    """What the flood measured, for each flood connection: seconds from sending half a head to the
    server closing it (None: still open when we gave up) and seconds from starting to connect to
    that close (the server's clock starts in between, when it accepts); /healthz latencies meanwhile."""

    closed_after: list[float | None]
    open_for: list[float | None]
    healthz_seconds: list[float]
    healthz_statuses: list[int]

    @property
    def all_closed_within(self) -> float | None:
        return None if None in self.closed_after else max(t for t in self.closed_after if t is not None)


@dataclass(frozen=True)
class HalfOpen:
    since_sent: float | None
    since_connecting: float | None


async def _half_open(host: str, port: int) -> HalfOpen:
    connecting = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(HALF_A_HEAD)
        await writer.drain()
        sent = time.monotonic()
        try:
            while await asyncio.wait_for(reader.read(4096), GIVE_UP_SECONDS):
                pass
        except TimeoutError:
            return HalfOpen(None, None)
        except ConnectionError:
            pass  # reset by the server: closed as well
        closed = time.monotonic()
        return HalfOpen(closed - sent, closed - connecting)
    finally:
        writer.close()


async def flood(url: str, *, connections: int, during: asyncio.Event) -> Flood:
    """Open `connections` half-open connections, then time /healthz until every one is closed
    (or given up on); `during` is set once they are all open."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    tasks = [asyncio.create_task(_half_open(host, port)) for _ in range(connections)]
    await asyncio.sleep(0.2)  # every connection open and its half head sent
    during.set()
    latencies: list[float] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not all(task.done() for task in tasks):
            started = time.monotonic()
            response = await client.get("/healthz")
            latencies.append(time.monotonic() - started)
            statuses.append(response.status_code)
            await asyncio.sleep(0.05)
    return Flood(
        closed_after=[task.result().since_sent for task in tasks],
        open_for=[task.result().since_connecting for task in tasks],
        healthz_seconds=latencies,
        healthz_statuses=statuses,
    )


def summary(result: Flood) -> str:
    latencies = result.healthz_seconds
    closed = [t for t in result.closed_after if t is not None]
    return (
        f"closed {len(closed)}/{len(result.closed_after)}, all within {result.all_closed_within}s; "
        f"/healthz n={len(latencies)} p50={statistics.median(latencies) * 1000:.1f}ms "
        f"max={max(latencies) * 1000:.1f}ms"
    )


def start_flood_target(workdir: Path, **env: str) -> DevServer:
    settings = newcomer_env(workdir, HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT), **env)
    return start_dev(workdir, "--port", str(free_port()), env=settings)


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[DevServer]:
    server = start_flood_target(tmp_path)
    yield server
    stop(server.process)


async def _submit_and_finish(server: DevServer, during: asyncio.Event) -> tuple[int, str]:
    await during.wait()
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        response = await client.post(
            "/api/v1/restoration/restore", files={"file": ("old.jpg", images.jpeg_bytes(320, 240), "image/jpeg")}
        )
        if response.status_code != 202:
            return response.status_code, response.text
        job_id = response.json()["id"]
        for _ in range(1200):
            job = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        return response.status_code, job["status"]


async def test_half_open_connections_are_closed_in_the_header_timeout_while_healthz_and_jobs_go_on(
    dev_server: DevServer,
) -> None:
    during = asyncio.Event()
    job = asyncio.create_task(_submit_and_finish(dev_server, during))
    result = await flood(dev_server.url, connections=FLOOD_CONNECTIONS, during=during)
    status, outcome = await job
    within = result.all_closed_within
    assert within is not None, summary(result)
    assert within <= HEADER_TIMEOUT + CLOSE_MARGIN, summary(result)
    # Never early: measured from before the connection existed, so loop latency cannot shorten it
    # (asyncio may run a timer up to its clock resolution early: a few ms of slack).
    assert min(t for t in result.open_for if t is not None) >= HEADER_TIMEOUT - 0.05, summary(result)
    assert set(result.healthz_statuses) == {200}, summary(result)
    assert statistics.median(result.healthz_seconds) < 0.2, summary(result)
    assert max(result.healthz_seconds) < 1.0, summary(result)
    assert (status, outcome) == (202, "completed")


async def test_an_idle_keep_alive_connection_is_closed(dev_server: DevServer) -> None:
    url = httpx.URL(dev_server.url)
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answered = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answered.startswith(b"HTTP/1.1 200")
        idle_since = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), GIVE_UP_SECONDS):
            pass  # the body, then EOF when the server closes the idle connection
        assert time.monotonic() - idle_since <= min(KEEP_ALIVE, HEADER_TIMEOUT) + CLOSE_MARGIN
    finally:
        writer.close()


async def test_garbage_from_many_connections_is_one_log_line_not_one_each(dev_server: DevServer) -> None:
    url = httpx.URL(dev_server.url)
    assert url.port is not None
    for _ in range(100):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"NOT HTTP AT ALL\x00\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(4096), 5)).startswith(b"HTTP/1.1 400")
        writer.close()
    log = (dev_server.workdir / "dev.log").read_text()
    assert 1 <= log.count("Invalid HTTP request received.") <= 2, log[-2000:]


async def test_at_the_connection_cap_the_connections_longest_without_a_head_make_room_for_a_request(
    tmp_path: Path,
) -> None:
    server = start_flood_target(tmp_path, API_MAX_CONNECTIONS="20")
    try:
        url = httpx.URL(server.url)
        assert url.port is not None
        holders = [asyncio.create_task(_half_open(url.host, url.port)) for _ in range(25)]
        await asyncio.sleep(0.3)  # every holder connected and its half head sent
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
        held = await asyncio.gather(*holders)
        # 25 held + 1 served under a cap of 20: the oldest ones were closed long before the timeout.
        made_room = [h for h in held if h.since_sent is not None and h.since_sent < HEADER_TIMEOUT / 2]
        assert len(made_room) >= 25 + 1 - 20, [h.since_sent for h in held]
        assert all(h.since_sent is not None for h in held)
        assert server.process.poll() is None
    finally:
        stop(server.process)


async def _upload_in_progress(server: DevServer, started: asyncio.Event, done: asyncio.Event) -> None:
    """A submit whose head is complete and whose body has only begun, until `done`."""
    url = httpx.URL(server.url)
    _, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            b"POST /api/v1/restoration/restore HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {server.token}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n--b\r\n"
        )
        await writer.drain()
        started.set()
        await done.wait()
    finally:
        writer.close()


async def test_with_as_many_requests_in_progress_as_the_cap_a_new_request_gets_503(tmp_path: Path) -> None:
    server = start_flood_target(tmp_path, API_MAX_CONNECTIONS="20")
    done = asyncio.Event()
    starts = [asyncio.Event() for _ in range(20)]
    uploads = [asyncio.create_task(_upload_in_progress(server, started, done)) for started in starts]
    try:
        await asyncio.gather(*(started.wait() for started in starts))
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            for _ in range(100):  # until the server has taken every head in
                if (response := await client.get("/healthz")).status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 503
            done.set()
            await asyncio.gather(*uploads)
            for _ in range(100):  # until the server has seen the uploads go
                if (response := await client.get("/healthz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 200
        assert server.process.poll() is None
    finally:
        done.set()
        stop(server.process)


def test_a_repeated_line_passes_once_per_interval_and_the_next_counts_the_held_back() -> None:
    now = [0.0]
    once = OncePerInterval(10, clock=lambda: now[0])

    def record(msg: str, name: str = "asyncio") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    assert once.filter(record("socket.accept() out of system resource"))
    assert not any(once.filter(record("socket.accept() out of system resource")) for _ in range(500))
    assert once.filter(record("another kind"))
    assert once.filter(record("socket.accept() out of system resource", name="uvicorn.error"))
    now[0] = 10.0
    again = record("socket.accept() out of system resource")
    assert once.filter(again)
    assert again.suppressed == 500


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("base", [AutoWithHeadDeadline, H11WithHeadDeadline], ids=["auto", "h11"])
async def test_both_protocols_close_a_second_head_not_complete_in_time_on_a_kept_alive_connection(
    base: type[asyncio.Protocol],
) -> None:
    with bind_listener("127.0.0.1", 0) as listener:
        port = int(listener.getsockname()[1])
        protocol = head_deadline_protocol(0.5, base=base)
        # Keep-alive longer than the head deadline: the deadline, not uvicorn's idle timer, closes it.
        config = uvicorn.Config(_ok, log_config=None, http=protocol, timeout_keep_alive=30, lifespan="off")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:  # noqa: ASYNC110 - uvicorn has no start event
            await asyncio.sleep(0.01)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
            writer.write(HALF_A_HEAD)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(4096), 5) == b""
            assert 0.3 <= time.monotonic() - started <= 0.5 + CLOSE_MARGIN
            writer.close()
        finally:
            server.should_exit = True
            await serving
