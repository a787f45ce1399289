"""Upload limits as a client meets them: a 413 it can read, stalled uploads dropped, trickles cheap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from gql import uploads
from gql.errors import add_error_handlers
from gql.uploads import MULTIPART_OVERHEAD, BodyLimitMiddleware, read_form
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.proxy import free_port
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import RESTORE

MIB = 1024 * 1024
BOUNDARY = "limits-boundary"
FILE_PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
).encode()
# The small app's limits: small, so that crossing them is quick.
SMALL_FILE_LIMIT = 4 * MIB
IDLE_TIMEOUT = 0.5


def over_the_limit(api: ApiServer) -> int:
    """A file size (bytes) over the API's MAX_UPLOAD_BYTES plus the multipart allowance: 51 MiB."""
    limit: int = api.app.state.services.max_upload_bytes  # type: ignore[attr-defined]
    return limit + MULTIPART_OVERHEAD + 1


def spool_files() -> set[str]:
    """This process's open files in the temporary directory (spooled uploads live there, unlinked)."""
    where = os.path.realpath(tempfile.gettempdir())
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(where + "/"):
                found.add(f"{fd.name}:{target}")
    return found


def thread_count() -> int:
    match = re.search(r"^Threads:\s+(\d+)", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match
    return int(match.group(1))


@pytest.fixture
async def alice(api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    s3_server.reset()
    async with api.client(tokens.issue(sub="alice")) as client:
        yield client


def raw_head(api_url: str, *, token: str, length: int | None = None, path: str = RESTORE) -> tuple[str, int, bytes]:
    host, port = api_url.removeprefix("http://").split(":")
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: identity"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()
    return host, int(port), head


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout=30)


# -- a 413 the client can read ---------------------------------------------------------------------


async def test_httpx_upload_over_the_limit_reads_the_413_and_its_detail(
    alice: httpx.AsyncClient, api: ApiServer, s3_server: S3ServerHandle
) -> None:
    data = images.jpeg_bytes() + b"\0" * over_the_limit(api)
    response = await alice.post(RESTORE, files={"file": ("big.jpg", data, "image/jpeg")})
    assert response.status_code == 413
    assert "file too large" in response.json()["detail"]
    assert s3_server.keys("originals/") == []


async def test_httpx_upload_streamed_past_the_limit_reads_the_413(alice: httpx.AsyncClient, api: ApiServer) -> None:
    # A generator body has no Content-Length: the limit is found while reading.
    async def body() -> AsyncIterator[bytes]:
        yield FILE_PART_HEAD
        block = b"\0" * MIB
        for _ in range(over_the_limit(api) // MIB + 1):
            yield block

    response = await alice.post(
        RESTORE, content=body(), headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    assert response.status_code == 413
    assert "file too large" in response.json()["detail"]


async def test_an_answer_before_the_body_is_read_is_readable_too(api: ApiServer) -> None:
    # No token: the 401 is decided before the 40 MiB body is read, and the client still gets it.
    async with api.client() as anonymous:
        response = await anonymous.post(RESTORE, files={"file": ("a.jpg", b"\0" * (40 * MIB), "image/jpeg")})
    assert response.status_code == 401
    assert response.json()["detail"]


async def test_raw_socket_sending_a_body_over_the_limit_reads_the_413_and_its_detail(
    api: ApiServer, tokens: TokenFactory
) -> None:
    size = over_the_limit(api)
    host, port, head = raw_head(api.url, token=tokens.issue(sub="alice"), length=len(FILE_PART_HEAD) + size)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + FILE_PART_HEAD)
        for offset in range(0, size, MIB):
            writer.write(b"\0" * min(MIB, size - offset))  # exactly the announced length
            await writer.drain()
        answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'{"detail":"file too large' in answer.replace(b": ", b":")


# -- the lingering close is bounded, and stalled uploads are dropped (a small app, small limits) ----


@pytest.fixture
async def small_app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The body limits and the multipart parser alone, with small limits, served by uvicorn."""
    monkeypatch.setattr(uploads, "LINGER_MAX_BYTES", 2 * MIB)
    monkeypatch.setattr(uploads, "LINGER_SECONDS", 2.0)
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        form = await read_form(request)
        await form.close()
        return {"fields": len(form)}

    add_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body=SMALL_FILE_LIMIT + MULTIPART_OVERHEAD,
        file_limit=SMALL_FILE_LIMIT,
        idle_timeout=IDLE_TIMEOUT,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_lingering_after_a_413_stops_at_its_byte_cap(small_app: str) -> None:
    host, port, head = raw_head(small_app, token="x", length=5 * 1024**3, path="/upload")
    reader, writer = await asyncio.open_connection(host, port)
    sent = 0
    try:
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            while sent < 64 * MIB:  # far past the 2 MiB cap: the server must hang up first
                writer.write(b"\0" * (256 * 1024))
                await asyncio.wait_for(writer.drain(), timeout=10)
                sent += 256 * 1024
        answer = await read_answer(reader)
    except ConnectionError:
        answer = b""
    finally:
        writer.close()
    assert sent < 64 * MIB
    assert answer.startswith(b"HTTP/1.1 413") or answer == b""


async def test_lingering_after_a_413_stops_at_its_time_cap(small_app: str) -> None:
    host, port, head = raw_head(small_app, token="x", length=5 * 1024**3, path="/upload")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)  # and then nothing: the server must not wait for the 5 GB
        started = asyncio.get_running_loop().time()
        answer = await read_answer(reader)
        waited = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert waited < 2.0 + 1.0  # LINGER_SECONDS (patched) plus slack


async def test_upload_that_stalls_is_dropped_with_408_and_its_spool_file_removed(small_app: str) -> None:
    host, port, head = raw_head(small_app, token="x", length=len(FILE_PART_HEAD) + 3 * MIB, path="/upload")
    before = spool_files()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + FILE_PART_HEAD + b"\0" * (2 * MIB))  # past the 1 MiB in memory: on disk
        await writer.drain()
        for _ in range(100):
            if spool_files() - before:
                break
            await asyncio.sleep(0.01)
        assert spool_files() - before, "the upload was not spooled to disk"
        answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"no data received" in answer
    assert spool_files() - before == set()


async def test_upload_that_keeps_sending_is_not_dropped_by_the_idle_timeout(small_app: str) -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        yield FILE_PART_HEAD
        for _ in range(6):  # 1.2 s in all, more than the idle timeout, never idle that long
            await asyncio.sleep(IDLE_TIMEOUT / 2.5)
            yield b"\0" * 1024
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with httpx.AsyncClient(base_url=small_app, timeout=10) as client:
        response = await client.post(
            "/upload", content=slow_body(), headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        )
    assert response.status_code == 200
    assert response.json() == {"fields": 1}


# -- 200 trickling clients hold only their sockets --------------------------------------------------


@contextlib.contextmanager
def sampling(every: float, probe: Callable[[], tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
    """`probe()` every `every` seconds in a thread, while the block runs."""
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            samples.append(probe())
            stop.wait(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
async def test_200_clients_trickling_a_byte_a_second_hold_no_thread_and_no_temp_file(
    api: ApiServer, tokens: TokenFactory
) -> None:
    clients = 200
    seconds = 4
    host, port, head = raw_head(api.url, token=tokens.issue(sub="alice"), length=len(FILE_PART_HEAD) + MIB)
    threads_before, spools_before = thread_count(), spool_files()
    connections = [await asyncio.open_connection(host, port) for _ in range(clients)]
    try:
        for _, writer in connections:
            writer.write(head + FILE_PART_HEAD)
        with sampling(0.1, lambda: (thread_count(), len(spool_files() - spools_before))) as samples:
            for _ in range(seconds):
                for _, writer in connections:
                    writer.write(b"\0")
                await asyncio.gather(*(writer.drain() for _, writer in connections))
                await asyncio.sleep(1)
        assert all(not reader.at_eof() for reader, _ in connections), "a trickling client was dropped"
    finally:
        for _, writer in connections:
            writer.close()
    most_threads = max(count for count, _ in samples)
    most_spools = max(spools for _, spools in samples)
    # Threads come only from the fixed pools (Starlette runs sync dependencies in anyio's, boto3 and
    # Pillow work uses asyncio's) and the sampler itself: never one per client.
    pools = anyio.to_thread.current_default_thread_limiter().total_tokens + min(32, (os.cpu_count() or 1) + 4)
    assert most_threads - threads_before <= pools + 2 < clients
    assert most_spools == 0
