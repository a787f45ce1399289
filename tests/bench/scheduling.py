"""What the scheduling benchmarks (scaling, utilisation, overhead, fairness) share.

Submitting jobs, waiting for them in the database, reading what each emulated ComfyUI server
saw (`/_emulator/state` for when prompts arrived, `/history` for `execution_start` and
`execution_success` in ms), and CPU seconds per process, so a missed target can say what the
two cores were doing.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from PIL import Image, ImageDraw

from tests.bench.stack import Stack

TERMINAL = ("completed", "failed")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def quiet_moto() -> None:
    """moto's S3 server (in this process) logs a line per request; a benchmark prints figures."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def small_workflow(folder: Path, megapixels: float) -> Path:
    """The bundled workflow with ImageScaleToTotalPixels fixed at `megapixels` (no megapixels binding).

    The product scales every input to 1 MP; the emulator then spends ~0.5 CPU-s per prompt on
    CPU stand-ins for the GPU nodes. On a 2-core machine running several emulators that CPU work,
    not our scheduling, would set the pace, so the scheduling benchmarks keep the image small.
    """
    graph = json.loads((WORKFLOWS / "restore.json").read_text())
    bindings = json.loads((WORKFLOWS / "restore.bindings.json").read_text())
    scale = bindings.pop("megapixels")
    graph[scale["node"]]["inputs"][scale["input"]] = megapixels
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(graph))
    (folder / "bench.bindings.json").write_text(json.dumps(bindings))
    return folder / "bench.json"


def photo_jpeg(width: int, height: int, *, quality: int = 88) -> bytes:
    """A photo-like JPEG: gradients, shapes and grain, so it compresses like a photo, not a flat test card."""
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(base)
    for n in range(12):
        x, y = (n * 97) % width, (n * 61) % height
        draw.ellipse((x, y, x + width // 5, y + height // 4), fill=((n * 40) % 256, (n * 70) % 256, (n * 23) % 256))
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    out = io.BytesIO()
    Image.blend(base, grain, 0.25).save(out, "JPEG", quality=quality)
    return out.getvalue()


async def submit(client: httpx.AsyncClient, photo: bytes, token: str | None = None) -> tuple[str, float, float]:
    """POST one job: (job id, time.time() when sent, time.time() when the 202 arrived)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    sent = time.time()
    response = await client.post(
        "/api/v1/restoration/restore", files={"file": ("photo.jpg", photo, "image/jpeg")}, headers=headers
    )
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text[:200]}")
    return response.json()["id"], sent, time.time()


async def submit_many(
    client: httpx.AsyncClient, photo: bytes, count: int, *, concurrency: int = 8, token: str | None = None
) -> list[tuple[str, float, float]]:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> tuple[str, float, float]:
        async with gate:
            return await submit(client, photo, token)

    return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass
class JobRow:
    id: str
    user_id: str
    status: str
    error_message: str | None
    comfy_server: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


async def job_rows(database_url: str) -> dict[str, JobRow]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT id, user_id, status, error_message, comfy_server, created_at, started_at, finished_at "
            "FROM restoration_jobs"
        )
    finally:
        await connection.close()

    def ts(value: datetime | None) -> float | None:
        return value.timestamp() if value is not None else None

    return {
        str(row["id"]): JobRow(
            id=str(row["id"]),
            user_id=row["user_id"],
            status=row["status"],
            error_message=row["error_message"],
            comfy_server=row["comfy_server"],
            created_at=row["created_at"].timestamp(),
            started_at=ts(row["started_at"]),
            finished_at=ts(row["finished_at"]),
        )
        for row in rows
    }


async def wait_terminal(database_url: str, count: int, *, within: float = 600.0, poll: float = 0.05) -> None:
    """Until `count` jobs are completed or failed (read from the database itself)."""
    connection = await asyncpg.connect(database_url)
    try:
        give_up = time.monotonic() + within
        while time.monotonic() < give_up:
            done = await connection.fetchval(
                "SELECT count(*) FROM restoration_jobs WHERE status IN ('completed', 'failed')"
            )
            if done >= count:
                return
            await asyncio.sleep(poll)
    finally:
        await connection.close()
    raise RuntimeError(f"fewer than {count} jobs were terminal after {within:.0f} s")


@dataclass
class Prompt:
    """One prompt as a server saw it (seconds since the epoch)."""

    prompt_id: str
    server: str
    received: float
    start: float | None
    end: float | None


async def prompts_seen(stack: Stack) -> list[Prompt]:
    """Every prompt every emulated server received, with its run's start and end."""
    seen: list[Prompt] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for comfy in stack.comfies:
            state = (await client.get(f"{comfy.url}/_emulator/state")).json()
            history = (await client.get(f"{comfy.url}/history")).json()
            for entry in state["prompts"]:
                if entry.get("http_status") != 200:
                    continue
                prompt_id = entry.get("prompt_id")
                if prompt_id is None:
                    continue
                marks = _marks(history.get(prompt_id))
                seen.append(
                    Prompt(
                        prompt_id=prompt_id,
                        server=comfy.url,
                        received=entry["received_at"],
                        start=marks.get("execution_start"),
                        end=marks.get("execution_success") or marks.get("execution_error"),
                    )
                )
    seen.sort(key=lambda prompt: prompt.received)
    return seen


def _marks(entry: dict[str, Any] | None) -> dict[str, float]:
    if not entry:
        return {}
    return {event: data["timestamp"] / 1000 for event, data in entry["status"]["messages"] if "timestamp" in data}


# --- CPU -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds per part of the stack between `start()` and `stop()`."""

    def __init__(self, stack: Stack) -> None:
        self.parts: dict[str, list[int]] = {
            "emulators": [c.process.pid for c in stack.comfies if c.process is not None],
            "workers": [p.pid for p in stack.processes[1:]],
            "api": [stack.api_pid],
            "bench+moto S3": [os.getpid()],
        }
        self._before: dict[str, float] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self.used: dict[str, float] = {}
        self.machine_busy = 0.0
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        parts = {**self.parts, "postgres": postgres_pids()}
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in parts.items()}

    def start(self) -> None:
        self._before = self._sample()
        self._machine = machine_cpu()
        self._started = time.monotonic()

    def stop(self) -> None:
        after = self._sample()
        busy, _total = machine_cpu()
        self.used = {name: after[name] - self._before.get(name, 0.0) for name in after}
        self.machine_busy = busy - self._machine[0]
        self.wall = time.monotonic() - self._started

    def summary(self) -> str:
        cores = os.cpu_count() or 1
        others = self.machine_busy - sum(self.used.values())
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.used.items())
        parts += f", everything else on the machine {others:.1f} s"
        share = self.machine_busy / (self.wall * cores) if self.wall else float("nan")
        return (
            f"CPU over {self.wall:.1f} s on {cores} cores: machine {self.machine_busy:.1f} CPU-s busy "
            f"({share:.0%} of capacity); {parts}"
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"
