"""Soak: many submissions at a fixed concurrency through the real stack, every job followed to its end.

Run by hand (not by pytest):

    .venv/bin/python tests/bench/soak.py [--jobs 500] [--concurrency 20] [--workers 2] [--service-time 0.05]

Each of `--concurrency` clients submits over REST, then polls `GET /jobs/{id}` until the job is
terminal, and starts over until `--jobs` submissions were made. Prints throughput (terminal jobs
per second of wall time), end-to-end latency (submit sent → terminal state seen; the poll
interval bounds its error), errors (non-202 submits, failed jobs, other failed requests; target 0),
jobs not terminal at the end (target 0, counted from the database itself), and how the jobs were
spread over the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.stack import Stack, keep_logs, rss_mib, running_stack
from tests.fixtures import images

TERMINAL = ("completed", "failed")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # submit → completed
    submit_latencies: list[float] = field(default_factory=list)  # the POST alone
    completed: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)  # error message → count
    refused: collections.Counter[int] = field(default_factory=collections.Counter)  # non-202 submit status → count
    request_errors: collections.Counter[str] = field(default_factory=collections.Counter)  # other failures
    unfinished: list[str] = field(default_factory=list)  # still not terminal at the client's deadline
    first_submit: float = 0.0
    last_terminal: float = 0.0


async def one_job(client: httpx.AsyncClient, photo: bytes, tally: Tally, *, poll: float, deadline: float) -> None:
    started = time.perf_counter()
    tally.first_submit = tally.first_submit or started
    try:
        response = await client.post("/api/v1/restoration/restore", files={"file": ("photo.jpg", photo, "image/jpeg")})
    except httpx.HTTPError as exc:
        tally.request_errors[f"submit: {type(exc).__name__}"] += 1
        return
    tally.submit_latencies.append(time.perf_counter() - started)
    if response.status_code != 202:
        tally.refused[response.status_code] += 1
        return
    job_id = response.json()["id"]
    give_up = time.perf_counter() + deadline
    while time.perf_counter() < give_up:
        await asyncio.sleep(poll)
        try:
            read = await client.get(f"/api/v1/restoration/jobs/{job_id}")
        except httpx.HTTPError as exc:
            tally.request_errors[f"GET: {type(exc).__name__}"] += 1
            continue
        if read.status_code != 200:
            tally.request_errors[f"GET: HTTP {read.status_code}"] += 1
            continue
        job = read.json()
        if job["status"] in TERMINAL:
            now = time.perf_counter()
            tally.last_terminal = max(tally.last_terminal, now)
            if job["status"] == "completed":
                tally.completed += 1
                tally.latencies.append(now - started)
            else:
                tally.failed[job["error_message"]] += 1
            return
    tally.unfinished.append(job_id)


async def soak(
    stack: Stack, *, jobs: int, concurrency: int, poll: float, deadline: float, size: tuple[int, int]
) -> Tally:
    photo = images.jpeg_bytes(*size)
    tally = Tally()
    remaining = iter(range(jobs))
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60, limits=limits) as client:

        async def client_loop() -> None:
            for _ in remaining:  # shared iterator: each number is taken by exactly one client
                await one_job(client, photo, tally, poll=poll, deadline=deadline)

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return tally


async def database_census(database_url: str) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Jobs by status and by worker, and the jobs not terminal, read from the database itself."""
    connection = await asyncpg.connect(database_url)
    try:
        by_status = {
            row["status"]: row["n"]
            for row in await connection.fetch("SELECT status, count(*) AS n FROM restoration_jobs GROUP BY status")
        }
        by_worker = {
            row["worker_id"] or "-": row["n"]
            for row in await connection.fetch(
                "SELECT worker_id, count(*) AS n FROM restoration_jobs GROUP BY worker_id ORDER BY worker_id"
            )
        }
        stuck = [
            f"{row['id']} {row['status']} worker={row['worker_id']} progress={row['progress']} seq={row['seq']} "
            f"age={row['age']:.0f}s"
            for row in await connection.fetch(
                "SELECT id, status, worker_id, progress, seq, extract(epoch FROM now() - created_at) AS age "
                "FROM restoration_jobs WHERE status IN ('pending', 'processing') ORDER BY created_at"
            )
        ]
    finally:
        await connection.close()
    return by_status, by_worker, stuck


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def main_async(args: argparse.Namespace) -> None:
    size = tuple(int(part) for part in args.image.lower().split("x"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    async with running_stack(service_time=args.service_time, workers=args.workers, log_level=args.log_level) as stack:
        await asyncio.sleep(1.0)  # let the workers open their ComfyUI sockets
        workers_alive = sum(process.poll() is None for process in stack.processes[1:])
        wall_start = time.perf_counter()
        tally = await soak(
            stack,
            jobs=args.jobs,
            concurrency=args.concurrency,
            poll=args.poll,
            deadline=args.deadline,
            size=(size[0], size[1]),
        )
        wall = time.perf_counter() - wall_start
        by_status, by_worker, stuck = await database_census(stack.database_url)
        rss = {f"pid {process.pid}": rss_mib(process.pid) for process in stack.processes if process.poll() is None}
        if args.keep_logs:
            keep_logs(stack, args.keep_logs)

    terminal = tally.completed + sum(tally.failed.values())
    active = (tally.last_terminal - tally.first_submit) if terminal else float("nan")
    e2e, submits = tally.latencies, tally.submit_latencies
    out = [
        f"soak: {args.jobs} submissions, concurrency {args.concurrency}, {args.workers} worker process(es) "
        f"({workers_alive} alive at start), double service time {args.service_time} s, "
        f"{size[0]}x{size[1]} JPEG, poll {ms(args.poll)}",
        f"wall time: {wall:.1f} s; throughput: {terminal / active:.1f} jobs/s "
        "(terminal jobs / first submit → last terminal)",
        f"end-to-end (submit → completed seen), {len(e2e)} jobs: p50 {ms(percentile(e2e, 0.5))}, "
        f"p95 {ms(percentile(e2e, 0.95))}, max {ms(max(e2e, default=float('nan')))}",
        f"submit request alone: p50 {ms(percentile(submits, 0.5))}, p95 {ms(percentile(submits, 0.95))}",
        f"completed: {tally.completed}; failed jobs: {sum(tally.failed.values())} {dict(tally.failed) or ''}",
        f"errors: non-202 submits {sum(tally.refused.values())} {dict(tally.refused) or ''}; "
        f"other request errors {sum(tally.request_errors.values())} {dict(tally.request_errors) or ''}",
        f"not terminal at the end: {len(stuck)} (database: {by_status}); "
        f"not terminal within --deadline {args.deadline:g} s: {len(tally.unfinished)}",
        *(f"  stuck: {line}" for line in stuck),
        f"jobs per worker: {list(by_worker.values())}; RSS at the end: "
        + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss.items()),
    ]
    print("\n".join(out))  # noqa: T201 - a benchmark prints its figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500, help="submissions in all (default 500)")
    parser.add_argument("--concurrency", type=int, default=20, help="clients submitting at once (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="`restoration worker` processes (default 2)")
    parser.add_argument("--service-time", type=float, default=0.05, help="the double's sampler seconds (default 0.05)")
    parser.add_argument("--image", default="640x480", help="size of the submitted JPEG (default 640x480)")
    parser.add_argument("--poll", type=float, default=0.05, help="status poll interval in seconds (default 0.05)")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the processes (default WARNING)")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the processes' logs to this folder")
    parser.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        help="seconds a client follows one job before counting it stuck (default 60)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
