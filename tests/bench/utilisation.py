"""Utilisation: does the GPU ever wait for us? 40 jobs at once, one emulated server, 0.5 s service time.

Run by hand: `.venv/bin/python tests/bench/utilisation.py [--jobs 40 --workers 2]`.

As the server sees it (its history's `execution_start`/`execution_success`): busy time (the sum
of its prompt runs) ÷ (last end - first start). Target ≥ 99 %. Also prints the gaps between one
run's end and the next one's start, and how early the next prompt had arrived (a prompt that
arrived before the previous run ended was waiting in ComfyUI's queue, as it should).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.scheduling import (
    CpuMeter,
    job_rows,
    ms,
    percentile,
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
TARGET = 0.99


async def run(jobs: int, workers: int) -> None:
    photo = photo_jpeg(320, 240)
    workdir = tempfile.TemporaryDirectory()
    env = {"COMFYUI_WORKFLOW": str(small_workflow(Path(workdir.name), megapixels=320 * 240 / 1_000_000))}
    async with running_stack(
        service_time=SERVICE_TIME, workers=workers, redis_url=SCHEDULING_REDIS_URL, env=env
    ) as stack:
        await asyncio.sleep(1.5)  # the workers open their ComfyUI sockets
        meter = CpuMeter(stack)
        meter.start()
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
            await submit_many(client, photo, jobs, concurrency=jobs)
        await wait_terminal(stack.database_url, jobs)
        meter.stop()
        rows = await job_rows(stack.database_url)
        prompts = [p for p in await prompts_seen(stack) if p.start is not None and p.end is not None]

    workdir.cleanup()
    failed = [row for row in rows.values() if row.status != "completed"]
    runs = sorted(prompts, key=lambda p: p.start or 0.0)
    busy = sum((p.end or 0.0) - (p.start or 0.0) for p in runs)
    span = (runs[-1].end or 0.0) - (runs[0].start or 0.0)
    utilisation = busy / span
    gaps = [(b.start or 0.0) - (a.end or 0.0) for a, b in itertools.pairwise(runs)]
    lead = [(a.end or 0.0) - b.received for a, b in itertools.pairwise(runs)]
    late = sum(1 for value in lead if value < 0)
    out = [
        f"utilisation: {jobs} jobs (320x240 JPEG) submitted at once, 1 emulated server, "
        f"service time {SERVICE_TIME} s, "
        f"{workers} worker(s), COMFYUI_MAX_INFLIGHT 2",
        f"server runs: {len(runs)}; busy {busy:.2f} s over {span:.2f} s (first start → last end): "
        f"{utilisation:.2%} — target ≥ {TARGET:.0%}: {verdict(utilisation >= TARGET)}",
        f"gap between one run's end and the next start: p50 {ms(percentile(gaps, 0.5))}, "
        f"p95 {ms(percentile(gaps, 0.95))}, max {ms(max(gaps, default=float('nan')))}",
        f"next prompt already queued in ComfyUI when the previous run ended: {len(lead) - late}/{len(lead)} "
        f"(lead p50 {ms(percentile(lead, 0.5))}, min {ms(min(lead, default=float('nan')))})",
        f"jobs not completed: {len(failed)} {[row.error_message for row in failed][:3] or ''}",
        meter.summary(),
    ]
    print("\n".join(out))  # noqa: T201 - a benchmark prints its figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    quiet_moto()
    asyncio.run(run(args.jobs, args.workers))


if __name__ == "__main__":
    main()
