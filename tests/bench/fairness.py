"""Fairness: user A submits 200 jobs, user B submits 1 a second later; how long does B wait?

Run by hand: `.venv/bin/python tests/bench/fairness.py [--backlog 200 --workers 2]`.

One emulated server (0.5 s service time, COMFYUI_MAX_INFLIGHT 2), two workers, 320x240 JPEGs.
A's 200 submissions go in 8 at a time; one second after the last 202, B submits one job. B's
wait is from B's submit to its prompt starting to run in ComfyUI (and to its completion); the
target is at most one service time plus the prompts already in ComfyUI when B submitted (each a
service time). Also printed: how many of A's prompts ComfyUI received between B's submit and B's
prompt (those filling slots free at that moment), and that A's jobs kept flowing afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.scheduling import (
    job_rows,
    ms,
    photo_jpeg,
    prompts_seen,
    quiet_moto,
    small_workflow,
    submit,
    submit_many,
    verdict,
)
from tests.bench.stack import SCHEDULING_REDIS_URL, running_stack

SERVICE_TIME = 0.5


async def until_terminal(database_url: str, job_id: str) -> None:
    for _ in range(6000):
        if (await job_rows(database_url))[job_id].status in ("completed", "failed"):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"job {job_id} not terminal after 5 minutes")


async def run(backlog: int, workers: int) -> None:
    photo = photo_jpeg(320, 240)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"COMFYUI_WORKFLOW": str(small_workflow(Path(tmp), megapixels=320 * 240 / 1_000_000))}
        async with running_stack(
            service_time=SERVICE_TIME, workers=workers, redis_url=SCHEDULING_REDIS_URL, env=env
        ) as stack:
            await asyncio.sleep(1.5)  # the workers open their ComfyUI sockets
            token_a, token_b = stack.token_for("user-a"), stack.token_for("user-b")
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as client:
                a_jobs = await submit_many(client, photo, backlog, concurrency=8, token=token_a)
                await asyncio.sleep(1.0)
                b_id, b_sent, _ = await submit(client, photo, token_b)
                await until_terminal(stack.database_url, b_id)
                await asyncio.sleep(1.0)  # A's jobs keep flowing after B's
            rows = await job_rows(stack.database_url)
            prompts = await prompts_seen(stack)

    b_row = rows[b_id]
    b_prompt = next(p for p in prompts if p.prompt_id == b_id)
    assert b_prompt.start is not None
    assert b_row.finished_at is not None
    a_ids = {job_id for job_id, _, _ in a_jobs}
    in_comfy = [p for p in prompts if p.received <= b_sent and (p.end is None or p.end > b_sent)]
    ahead = [p for p in prompts if p.prompt_id in a_ids and b_sent < p.received < b_prompt.received]
    after = [p for p in prompts if p.prompt_id in a_ids and p.received > b_prompt.received]
    a_done_before = sum(1 for p in prompts if p.prompt_id in a_ids and p.end is not None and p.end <= b_sent)
    wait_start = b_prompt.start - b_sent
    wait_done = b_row.finished_at - b_sent
    bound = SERVICE_TIME * (1 + len(in_comfy))
    out = [
        f"fairness: user A submitted {backlog} jobs ({len(a_jobs) - a_done_before} of them still unfinished), "
        f"user B 1 job a second after A's last 202; 1 emulated server, service time {SERVICE_TIME} s, "
        f"COMFYUI_MAX_INFLIGHT 2, {workers} workers",
        f"prompts already in ComfyUI when B submitted: {len(in_comfy)}; A's prompts ComfyUI received between "
        f"B's submit and B's prompt: {len(ahead)}",
        f"B's wait: submit → its prompt runs {wait_start:.2f} s, submit → completed {wait_done:.2f} s "
        f"(claim after {ms((b_row.started_at or b_sent) - b_sent)})",
        f"target: wait ≤ one service time + the prompts already in ComfyUI = {bound:.2f} s: "
        f"{verdict(wait_start <= bound)}",
        f"A's prompts received after B's: {len(after)} (A keeps flowing)",
    ]
    print("\n".join(out))  # noqa: T201 - a benchmark prints its figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=200, help="user A's jobs (default 200)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    quiet_moto()
    asyncio.run(run(args.backlog, args.workers))


if __name__ == "__main__":
    main()
