"""Submit→completed latency of one job at a time, against the ComfyUI double (0.5 s service time).

Run by hand (not by pytest): `.venv/bin/python tests/bench/submit_latency.py [--jobs 10]`.
Prints the median, min and max over the jobs, and the part that is not ComfyUI's own service time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.stack import running_stack
from tests.fixtures import images

SERVICE_TIME = 0.5
# Status polling interval of the measuring client; bounds the measurement error.
POLL = 0.005


async def measure(jobs: int) -> list[float]:
    photo = images.jpeg_bytes(1024, 768)
    latencies: list[float] = []
    async with running_stack(service_time=SERVICE_TIME) as stack:
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
            for _ in range(jobs + 1):  # the first job warms up connections and caches; not counted
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/restoration/restore", files={"file": ("photo.jpg", photo, "image/jpeg")}
                )
                response.raise_for_status()
                job_id = response.json()["id"]
                while True:
                    job = (await client.get(f"/api/v1/restoration/jobs/{job_id}")).json()
                    if job["status"] in ("completed", "failed"):
                        break
                    await asyncio.sleep(POLL)
                if job["status"] != "completed":
                    raise RuntimeError(f"job failed: {job['error_message']}")
                latencies.append(time.perf_counter() - started)
    return latencies[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    latencies = asyncio.run(measure(args.jobs))
    median = statistics.median(latencies)
    print(f"jobs: {len(latencies)} (1024x768 JPEG, double service time {SERVICE_TIME} s)")  # noqa: T201
    overhead = (median - SERVICE_TIME) * 1000
    print(  # noqa: T201
        f"submit->completed: median {median * 1000:.0f} ms, min {min(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; beyond the service time: median {overhead:.0f} ms"
    )


if __name__ == "__main__":
    main()
