"""Queue position and ETA: what a read costs with 10,000 jobs pending, and how far the ETA is from the truth.

Run by hand: `.venv/bin/python tests/bench/queue_position.py [--pending 10000 --users 50 --jobs 40]`.

1. Read cost (Redis alone, this process): the queue is filled with `--pending` jobs of `--users`
   users in their fair turns (Huey's sorted set + the job → member hash); at 100, 1,000 and the
   full length, the time of one job's standing (place + ETA, one script call) and of a page of
   100, p50/p95/p99 of 2,000 reads (300 for pages); then the same at full length as the API does
   it (`JobQueue.standings`, awaited: the script in a thread).
2. Read cost through the API (a real `restoration api` process, no worker): 100 pending jobs of
   one user among the `--pending` others, one job made `failed`; p50/p99 of 500 GraphQL `job`
   queries (interleaved) for a pending job (with queuePosition etaSeconds) against the failed one
   (no Redis read; both sign one URL), and of the REST page of the 100 pending jobs. Target: the
   pending job's query within 5 ms of the failed one's.
3. ETA error (a stack with one worker, one emulated server with a steady `--service` time,
   COMFYUI_MAX_INFLIGHT 2): 4 warm-up jobs are measured, then `--jobs` jobs are submitted at once;
   each job's `eta_seconds` from its 202 is compared with the time it actually took to complete,
   and again halfway (the ETA read closest to the middle of its actual time, against what was
   actually left). Mean/median absolute and relative error. Target: median relative ≤ 20 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.job import JobStatus
from tasks.estimates import Asked
from tasks.queue import JobQueue, create_huey
from tests.bench.scheduling import job_rows, percentile, photo_jpeg, quiet_moto, small_workflow, submit, verdict
from tests.bench.stack import running_stack

# This benchmark's own Redis database (it is flushed): the tests' TEST_REDIS_URL when set.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
JOB_QUERY = "query($id: ID!) { job(id: $id) { id status queuePosition etaSeconds } }"
POLL = 0.25


def fill(queue: JobQueue, count: int, users: int) -> list[str]:
    """`count` jobs of `users` users, queued in their fair turns (round robin of arrival)."""
    ids = []
    for n in range(count):
        job_id = str(uuid.uuid4())
        queue._enqueue(job_id, f"user-{n % users}", 1.0)
        ids.append(job_id)
    return ids


def timed(call: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        out.append(time.perf_counter() - started)
    return out


def figures(samples: list[float]) -> str:
    return (
        f"p50 {percentile(samples, 0.5) * 1000:.3f} ms, p95 {percentile(samples, 0.95) * 1000:.3f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.3f} ms"
    )


async def redis_read_cost(pending: int, users: int) -> list[str]:
    queue = JobQueue(create_huey(REDIS_URL, blocking=False))
    queue.huey.storage.conn.flushdb()
    out = [f"1. read cost in Redis ({users} users; one script call per read):"]
    ids: list[str] = []
    for length in sorted({100, 1000, pending}):
        ids += fill(queue, length - len(ids), users)
        assert queue.huey.pending_count() == length
        last = [Asked(id=ids[-1], status=JobStatus.PENDING)]
        page = [Asked(id=job_id, status=JobStatus.PENDING) for job_id in ids[-100:]]
        position = queue.estimates.read(last)[ids[-1]].queue_position
        one = timed(lambda: queue.estimates.read(last), 2000)  # noqa: B023 - used at once
        hundred = timed(lambda: queue.estimates.read(page), 300)  # noqa: B023 - used at once
        out.append(f"   {length:>6} pending: one job (place {position}): {figures(one)}")
        out.append(f"   {length:>6} pending: a page of 100: {figures(hundred)}")
    one, hundred = await as_the_api_reads(queue, last, page)
    out.append(f"   {pending:>6} pending, as the API reads (a thread of asyncio, awaited): one {figures(one)}")
    out.append(f"   {pending:>6} pending, as the API reads: a page of 100 {figures(hundred)}")
    queue.huey.storage.conn.flushdb()
    return out


async def as_the_api_reads(queue: JobQueue, one: list[Asked], page: list[Asked]) -> tuple[list[float], list[float]]:
    samples: tuple[list[float], list[float]] = ([], [])
    for asked, out, repeat in ((one, samples[0], 2000), (page, samples[1], 300)):
        for _ in range(repeat):
            started = time.perf_counter()
            await queue.standings(asked)
            out.append(time.perf_counter() - started)
    return samples


async def api_read_cost(pending: int, users: int) -> list[str]:
    photo = photo_jpeg(160, 120)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"COMFYUI_WORKFLOW": str(small_workflow(Path(tmp), megapixels=0.02))}
        async with running_stack(service_time=0.1, workers=0, redis_url=REDIS_URL, env=env) as stack:
            queue = JobQueue(create_huey(REDIS_URL, blocking=False))
            await asyncio.to_thread(fill, queue, pending - 101, users)
            headers = {"Authorization": f"Bearer {stack.token}"}
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, headers=headers) as client:
                mine = [(await submit(client, photo))[0] for _ in range(101)]
                done = mine.pop()
                connection = await asyncpg.connect(stack.database_url)
                try:
                    await connection.execute(
                        "UPDATE restoration_jobs SET status = 'failed', error_message = 'bench', "
                        "error_code = 'INTERNAL', retryable = false, finished_at = now() WHERE id = $1",
                        uuid.UUID(done),
                    )
                finally:
                    await connection.close()
                await queue.withdraw(done)
                length = await queue.depth()

                async def query(job_id: str) -> dict:
                    response = await client.post("/graphql", json={"query": JOB_QUERY, "variables": {"id": job_id}})
                    return response.json()["data"]["job"]

                async def once(job_id: str) -> float:
                    started = time.perf_counter()
                    await query(job_id)
                    return time.perf_counter() - started

                pending_job = await query(mine[-1])
                for _ in range(50):  # warm up connections and caches
                    await query(mine[-1])
                    await query(done)
                with_place, without = [], []
                for _ in range(500):  # interleaved, so the machine's noise hits both alike
                    with_place.append(await once(mine[-1]))
                    without.append(await once(done))
                page = []
                for _ in range(100):
                    started = time.perf_counter()
                    await client.get("/api/v1/restoration/jobs?limit=100&status=pending")
                    page.append(time.perf_counter() - started)
    gap50 = percentile(with_place, 0.5) - percentile(without, 0.5)
    gap99 = percentile(with_place, 0.99) - percentile(without, 0.99)
    return [
        f"2. through the API ({length} pending, the measured job at place {pending_job['queuePosition']}):",
        f"   GraphQL job, pending (place + ETA): {figures(with_place)}",
        f"   GraphQL job, failed (no Redis read): {figures(without)}",
        f"   difference: p50 {gap50 * 1000:.2f} ms, p99 {gap99 * 1000:.2f} ms; target within 5 ms: "
        f"{verdict(gap50 <= 0.005 and gap99 <= 0.005)}",
        f"   REST page of 100 pending jobs: {figures(page)}",
    ]


async def eta_error(jobs: int, service: float) -> list[str]:
    photo = photo_jpeg(160, 120)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"COMFYUI_WORKFLOW": str(small_workflow(Path(tmp), megapixels=0.02))}
        async with running_stack(service_time=service, workers=1, redis_url=REDIS_URL, env=env) as stack:
            await asyncio.sleep(1.5)  # the worker opens its ComfyUI socket
            headers = {"Authorization": f"Bearer {stack.token}"}
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, headers=headers) as client:
                warm = [(await submit(client, photo))[0] for _ in range(4)]
                await until_done(stack.database_url, warm)
                submitted: dict[str, tuple[float, float | None]] = {}
                for _ in range(jobs):
                    response = await client.post(
                        "/api/v1/restoration/restore", files={"file": ("photo.jpg", photo, "image/jpeg")}
                    )
                    body = response.json()
                    submitted[body["id"]] = (time.time(), body["eta_seconds"])
                readings: dict[str, list[tuple[float, float]]] = {job_id: [] for job_id in submitted}
                while True:
                    listed = (await client.get("/api/v1/restoration/jobs?limit=100")).json()["jobs"]
                    now = time.time()
                    for job in listed:
                        if job["id"] in readings and job["eta_seconds"] is not None:
                            readings[job["id"]].append((now, job["eta_seconds"]))
                    if all(job["status"] in ("completed", "failed") for job in listed if job["id"] in submitted):
                        break
                    await asyncio.sleep(POLL)
            rows = await job_rows(stack.database_url)
    failed = [job_id for job_id in submitted if rows[job_id].status != "completed"]
    at_submit: list[tuple[float, float]] = []  # (predicted, actual)
    halfway: list[tuple[float, float]] = []
    for job_id, (sent, eta) in submitted.items():
        finished = rows[job_id].finished_at
        if finished is None:
            continue
        actual = finished - sent
        if eta is not None:
            at_submit.append((eta, actual))
        middle = sent + actual / 2
        near = min(readings[job_id], key=lambda reading: abs(reading[0] - middle), default=None)
        if near is not None:
            halfway.append((near[1], finished - near[0]))
    out = [
        f"3. ETA error: {jobs} jobs submitted at once after 4 warm-up jobs; 1 worker, 1 emulated server, "
        f"service time {service} s, COMFYUI_MAX_INFLIGHT 2; failed: {len(failed)}",
    ]
    for name, pairs in (("at submit", at_submit), ("halfway", halfway)):
        out.append(f"   {name}: {error_figures(pairs)}")
    if at_submit:
        last = max(at_submit, key=lambda pair: pair[1])
        out.append(f"   the last job: predicted {last[0]:.1f} s at submit, took {last[1]:.1f} s")
    medians = [statistics.median(abs(p - a) / a for p, a in pairs) for pairs in (at_submit, halfway) if pairs]
    met = bool(medians) and max(medians) <= 0.2
    out.append(f"   target: median relative error ≤ 20 % at submit and halfway: {verdict(met)}")
    return out


def error_figures(pairs: list[tuple[float, float]]) -> str:
    if not pairs:
        return "no ETA to compare"
    absolute = [abs(predicted - actual) for predicted, actual in pairs]
    relative = [abs(predicted - actual) / actual for predicted, actual in pairs if actual > 0]
    return (
        f"{len(pairs)} jobs; absolute error mean {statistics.mean(absolute):.2f} s, median "
        f"{statistics.median(absolute):.2f} s; relative error mean {statistics.mean(relative) * 100:.1f} %, "
        f"median {statistics.median(relative) * 100:.1f} %"
    )


async def until_done(database_url: str, job_ids: list[str], *, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await job_rows(database_url)
        if all(rows[job_id].status in ("completed", "failed") for job_id in job_ids):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("warm-up jobs did not finish")


async def run(pending: int, users: int, jobs: int, service: float) -> None:
    out = await redis_read_cost(pending, users)
    out += await api_read_cost(pending, users)
    out += await eta_error(jobs, service)
    print("\n".join(out))  # noqa: T201 - a benchmark prints its figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=10_000, help="jobs pending (default 10,000)")
    parser.add_argument("--users", type=int, default=50, help="users they belong to (default 50)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs of the ETA run (default 40)")
    parser.add_argument("--service", type=float, default=0.5, help="the emulator's seconds per prompt (default 0.5)")
    args = parser.parse_args()
    quiet_moto()
    asyncio.run(run(args.pending, args.users, args.jobs, args.service))


if __name__ == "__main__":
    main()
