"""1,000 jobUpdated subscriptions on one API process: notification latency, Redis connections, RSS.

Run by hand: `.venv/bin/python tests/bench/subscriptions.py [--jobs 50 --watchers 20]`.
Opens jobs x watchers graphql-transport-ws subscriptions, drives the jobs to completion through
the real worker and the ComfyUI double, and measures, per watcher, the time from the job's
completion (its `updatedAt`, written just before the event is published) to the COMPLETED message.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.stack import redis_connections, rss_mib, running_stack
from tests.fixtures import images
from tests.gql.ws import JOB_UPDATED, GraphQLSocket


async def open_watcher(url: str, token: str, job_id: str) -> GraphQLSocket:
    socket = await GraphQLSocket.open(url)
    await socket.init({"Authorization": f"Bearer {token}"})
    await socket.subscribe(JOB_UPDATED, {"id": job_id})
    first = await socket.receive(wait=60)
    assert first["payload"]["data"]["jobUpdated"]["status"] == "PENDING", first
    return socket


async def until_completed(socket: GraphQLSocket) -> float:
    """Seconds from the job's completion to this watcher's COMPLETED message."""
    while True:
        message = await socket.receive(wait=300)
        if message["type"] != "next":
            continue
        job = message["payload"]["data"]["jobUpdated"]
        if job["status"] in ("COMPLETED", "FAILED"):
            received = time.time()
            return received - datetime.fromisoformat(job["updatedAt"]).timestamp()


async def run(jobs: int, watchers: int) -> None:
    async with running_stack(service_time=0.05, workers=0) as stack:
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
            rss_before = rss_mib(stack.api_pid)
            photo = images.jpeg_bytes(320, 240)
            ids = []
            for _ in range(jobs):
                response = await client.post(
                    "/api/v1/restoration/restore", files={"file": ("p.jpg", photo, "image/jpeg")}
                )
                response.raise_for_status()
                ids.append(response.json()["id"])
            started = time.perf_counter()
            sockets: list[GraphQLSocket] = []
            for job_id in ids:
                sockets += await asyncio.gather(
                    *(open_watcher(stack.api_url, stack.token, job_id) for _ in range(watchers))
                )
            opened = time.perf_counter() - started
            connections_open = redis_connections(stack.api_pid)
            rss_open = rss_mib(stack.api_pid)
            stack.start_worker()  # the jobs waited in the queue until every watcher was in place
            latencies = await asyncio.gather(*(until_completed(socket) for socket in sockets))
            await asyncio.gather(*(socket.close() for socket in sockets))
            rss_after = rss_mib(stack.api_pid)
            connections_after = redis_connections(stack.api_pid)

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"subscriptions: {len(sockets)} ({jobs} jobs x {watchers} watchers), opened in {opened:.1f} s")  # noqa: T201
    print(f"completion -> notification: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms")  # noqa: T201
    print(f"API Redis connections: {connections_open} with all subscriptions open, {connections_after} after")  # noqa: T201
    rss = f"{rss_before:.0f} MiB before, {rss_open:.0f} MiB with subscriptions open, {rss_after:.0f} MiB after"
    print(f"API RSS: {rss}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=20)
    args = parser.parse_args()
    # uvloop on the client side too, so the client's own scheduling adds as little as possible.
    uvloop.run(run(args.jobs, args.watchers))


if __name__ == "__main__":
    main()
