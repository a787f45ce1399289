"""A slowloris flood against a real `restoration dev` with its production limits.

Run by hand: `.venv/bin/python tests/bench/connection_flood.py [--connections 900,5000]`.
For each flood size, opens that many connections that each send half a request head and then
nothing, and meanwhile reads `/healthz` every 50 ms and submits a photo; reports how long the
server took to close the flood connections (from before each connected), `/healthz` latency and
statuses during the flood (beyond `API_MAX_CONNECTIONS`, default 1000, requests get 503 by
design), the job's outcome, the process's peak open files and the log lines the flood cost.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fixtures import images
from tests.fixtures.proxy import free_port
from tests.system.e2e.test_dev import DevServer, newcomer_env, start_dev, stop

HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
GIVE_UP_SECONDS = 60.0


async def half_open(host: str, port: int) -> float | None:
    """Seconds from starting to connect until the server closed; None if it never did."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    try:
        writer.write(HALF_A_HEAD)
        await writer.drain()
        while await asyncio.wait_for(reader.read(4096), GIVE_UP_SECONDS):
            pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def submit_and_finish(server: DevServer) -> str:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
        response = await client.post(
            "/api/v1/restoration/restore", files={"file": ("old.jpg", images.jpeg_bytes(320, 240), "image/jpeg")}
        )
        if response.status_code != 202:
            return f"submit {response.status_code}"
        job_id = response.json()["id"]
        for _ in range(1200):
            job = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                return str(job["status"])
            await asyncio.sleep(0.1)
        return "not finished"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def flood(server: DevServer, connections: int) -> None:
    url = httpx.URL(server.url)
    assert url.port is not None
    log = server.workdir / "dev.log"
    lines_before = len(log.read_text().splitlines())
    tasks = [asyncio.create_task(half_open(url.host, url.port)) for _ in range(connections)]
    await asyncio.sleep(0.5)
    job = asyncio.create_task(submit_and_finish(server))
    latencies: list[float] = []
    statuses: collections.Counter[int | str] = collections.Counter()
    peak_files = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        while not all(task.done() for task in tasks):
            peak_files = max(peak_files, open_files(server.process.pid))
            started = time.monotonic()
            try:
                statuses[(await client.get("/healthz")).status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    closed = [t for t in (task.result() for task in tasks) if t is not None]
    outcome = await job
    lines = len(log.read_text().splitlines()) - lines_before
    ms = sorted(t * 1000 for t in latencies)
    timing = (
        f", after p50 {statistics.median(closed):.2f} s, min {min(closed):.2f} s, max {max(closed):.2f} s"
        if closed
        else ""
    )
    report = [
        f"{connections} half-open connections: closed {len(closed)}/{connections}{timing}",
        f"  /healthz during it: n={len(ms)} p50 {statistics.median(ms):.1f} ms, "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms, max {ms[-1]:.1f} ms; statuses {dict(statuses)}",
        f"  a job submitted during it: {outcome}; peak open files {peak_files}; log lines {lines}",
    ]
    print("\n".join(report), flush=True)  # noqa: T201


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", default="900,5000", help="flood sizes, comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        server = start_dev(workdir, "--port", str(free_port()), env=newcomer_env(workdir))
        try:
            print("restoration dev, HTTP_HEADER_TIMEOUT_SECONDS 10, API_MAX_CONNECTIONS 1000", flush=True)  # noqa: T201
            for size in (int(value) for value in args.connections.split(",")):
                await flood(server, size)
        finally:
            stop(server.process)


if __name__ == "__main__":
    asyncio.run(main())
