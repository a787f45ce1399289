"""Scaling: the same 80 jobs with 1, 2 and 4 emulated ComfyUI servers, side by side in one run.

Run by hand: `.venv/bin/python tests/bench/scaling.py [--jobs 80 --workers 2 --servers 1,2,4]`.

Each round starts a fresh stack (2 `restoration worker` processes, COMFYUI_URL listing every
server, 0.5 s service time), waits for the workers, submits the jobs (16 at a time) and waits
until all are terminal. jobs/s = jobs ÷ (first submit → last job finished), and the ratio to one
server. Target: 4 servers ≥ 3.8x one server. The input is a 320x240 JPEG and the workflow's
scale node is fixed at its size (`small_workflow`), so the emulators' CPU stand-ins stay small
next to the service time; the CPU seconds of each part are printed, so a miss says whether the
two cores were saturated (and by whom) rather than the GPUs starved.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.scheduling import (
    CpuMeter,
    Prompt,
    job_rows,
    photo_jpeg,
    prompts_seen,
    quiet_moto,
    small_workflow,
    submit_many,
    verdict,
    wait_terminal,
)
from tests.bench.stack import SCHEDULING_REDIS_URL, running_stack

SERVICE_TIME = 0.5
TARGET = 3.8
SLOTS = 2  # COMFYUI_MAX_INFLIGHT


@dataclass
class Run:
    start: float
    end: float


@dataclass
class Round:
    servers: int
    wall: float
    busy_span: float  # first prompt received → last job finished
    completed: int
    failed: int
    per_server: list[int]
    peak_in_flight: int
    utilisation: float  # mean over servers of busy ÷ (first start → last end)
    run_time: float  # mean execution_start → execution_success: the service time + the emulator's CPU work
    lead_in: float  # first submit → first run starts
    tail: float  # last run ends → last job finished
    cpu: str
    machine_share: float


def peak_in_flight(prompts: list[Prompt]) -> int:
    """Most of our prompts one server held at once (received → run ended), over all servers."""
    peak = 0
    for server in {p.server for p in prompts}:
        events = sorted(
            [(p.received, 1) for p in prompts if p.server == server]
            + [(p.end or float("inf"), -1) for p in prompts if p.server == server]
        )
        level = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
    return peak


def utilisation(prompts: list[Prompt]) -> float:
    shares = []
    for server in {p.server for p in prompts}:
        runs = [p for p in prompts if p.server == server and p.start is not None and p.end is not None]
        if not runs:
            continue
        busy = sum((p.end or 0.0) - (p.start or 0.0) for p in runs)
        shares.append(busy / (max(p.end or 0.0 for p in runs) - min(p.start or 0.0 for p in runs)))
    return sum(shares) / len(shares) if shares else float("nan")


async def one_round(servers: int, jobs: int, workers: int, workflow: Path, photo: bytes) -> Round:
    env = {"COMFYUI_WORKFLOW": str(workflow), "COMFYUI_MAX_INFLIGHT": str(SLOTS)}
    async with running_stack(
        service_time=SERVICE_TIME, workers=workers, servers=servers, redis_url=SCHEDULING_REDIS_URL, env=env
    ) as stack:
        await asyncio.sleep(2.0)  # the workers open one ComfyUI socket per server
        meter = CpuMeter(stack)
        meter.start()
        headers = {"Authorization": f"Bearer {stack.token}"}
        started = time.time()
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
            await submit_many(client, photo, jobs, concurrency=16)
        await wait_terminal(stack.database_url, jobs)
        meter.stop()
        rows = await job_rows(stack.database_url)
        prompts = await prompts_seen(stack)
        urls = [comfy.url for comfy in stack.comfies]

    finished = max(row.finished_at or 0.0 for row in rows.values())
    runs = [Run(p.start, p.end) for p in prompts if p.start is not None and p.end is not None]
    spread = Counter(p.server for p in prompts)
    cores = meter.machine_busy / meter.wall if meter.wall else float("nan")
    return Round(
        servers=servers,
        wall=finished - started,
        busy_span=finished - min(p.received for p in prompts),
        completed=sum(row.status == "completed" for row in rows.values()),
        failed=sum(row.status == "failed" for row in rows.values()),
        per_server=[spread[url] for url in urls],
        peak_in_flight=peak_in_flight(prompts),
        utilisation=utilisation(prompts),
        run_time=sum(p.end - p.start for p in runs) / len(runs),
        lead_in=min(p.start for p in runs) - started,
        tail=finished - max(p.end for p in runs),
        cpu=meter.summary(),
        machine_share=cores / 2,
    )


async def run(jobs: int, workers: int, counts: list[int]) -> None:
    photo = photo_jpeg(320, 240)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory() as tmp:
        workflow = small_workflow(Path(tmp), megapixels=320 * 240 / 1_000_000)
        for servers in counts:
            rounds.append(await one_round(servers, jobs, workers, workflow, photo))
    base = jobs / rounds[0].wall
    out = [
        f"scaling: {jobs} jobs (320x240 JPEG), {workers} workers, service time {SERVICE_TIME} s, "
        f"COMFYUI_MAX_INFLIGHT {SLOTS} per server",
        f"{'servers':>7} {'wall s':>7} {'jobs/s':>7} {'ratio':>6} {'ideal':>6} {'GPU busy':>8} {'run s':>6} "
        f"{'vs runs':>7} {'lead-in':>7} {'tail':>6} {'peak/server':>11} {'jobs per server':<18} failed",
    ]
    for r in rounds:
        rate = jobs / r.wall
        out.append(
            f"{r.servers:>7} {r.wall:>7.2f} {rate:>7.2f} {rate / base:>5.2f}x {r.servers / SERVICE_TIME:>6.1f} "
            f"{r.utilisation:>8.1%} {r.run_time:>6.3f} {rate / (r.servers / r.run_time):>7.1%} {r.lead_in:>7.2f} "
            f"{r.tail:>6.2f} {r.peak_in_flight:>11} {r.per_server!s:<18} {r.failed}"
        )
    out.append(
        "  ideal = servers / service time; GPU busy = each server's busy time / (its first start → last end); "
        "run s = mean server run (service time + the emulator's CPU work, longer when the CPU is contended); "
        "vs runs = jobs/s / (servers / run s); lead-in = first submit → first run; tail = last run end → "
        "last job completed"
    )
    for r in rounds:
        out.append(f"  {r.servers} server(s): {r.cpu}")
    steady = [jobs / (r.wall - r.lead_in) for r in rounds]
    out.append(
        "  from the first run on (without the lead-in): jobs/s "
        + ", ".join(
            f"{r.servers} server(s) {rate:.2f} ({rate / steady[0]:.2f}x)"
            for r, rate in zip(rounds, steady, strict=True)
        )
    )
    last = rounds[-1]
    ratio = (jobs / last.wall) / base
    if counts[0] == 1 and last.servers == 4:
        out.append(f"target: 4 servers ≥ {TARGET}x one server: {ratio:.2f}x — {verdict(ratio >= TARGET)}")
        if ratio < TARGET:
            out.append(
                f"  while 4 servers ran, the machine's 2 cores were {last.machine_share:.0%} busy "
                "(see the CPU line above: emulators' CPU stand-ins, workers, API, PostgreSQL, moto S3 in this "
                "process, and other processes on the machine)"
            )
    print("\n".join(out))  # noqa: T201 - a benchmark prints its figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--servers", default="1,2,4", help="server counts to compare (default 1,2,4)")
    args = parser.parse_args()
    quiet_moto()
    asyncio.run(run(args.jobs, args.workers, [int(n) for n in args.servers.split(",")]))


if __name__ == "__main__":
    main()
