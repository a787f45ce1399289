"""The operators' endpoints, no token needed: `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from comfy.client import ComfyClient
from gql.context import Services, services_of
from models.db import database_answers
from storage.errors import StorageError
from tasks import metrics
from tasks.queue import QueueUnavailable
from tasks.scheduler import SlotBoard

router = APIRouter(include_in_schema=False)


def _comfy_probes(request: Request) -> list[ComfyClient]:
    probes: list[ComfyClient] = request.app.state.comfy_probes
    return probes


async def _comfy_states(request: Request) -> dict[str, dict[str, object]]:
    """Each ComfyUI server: whether it answers, and how many of our prompts it holds (all workers)."""
    probes = _comfy_probes(request)
    answers = await asyncio.gather(*(probe.ping() for probe in probes))
    board: SlotBoard = request.app.state.slot_board
    try:
        loads: dict[str, int | None] = dict(await asyncio.to_thread(board.loads, [p.base_url for p in probes]))
    except (redis.RedisError, OSError):
        loads = {}
    return {
        probe.base_url: {"state": "ok" if up else "unavailable", "in_flight": loads.get(probe.base_url)}
        for probe, up in zip(probes, answers, strict=True)
    }


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    services: Services = services_of(request)
    checks: dict[str, str] = {}
    checks["redis"] = "ok" if await services.queue.ping() else "unavailable"
    try:
        await services.storage.ping()
        checks["storage"] = "ok"
    except StorageError:
        checks["storage"] = "unavailable"
    checks["database"] = "ok" if await database_answers() else "unavailable"
    ready = all(state == "ok" for state in checks.values())
    # Reported, not required: jobs wait in the queue while ComfyUI is away.
    servers = await _comfy_states(request)
    checks["comfyui"] = "ok" if any(server["state"] == "ok" for server in servers.values()) else "unavailable"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "dependencies": checks, "comfyui_servers": servers},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    services = services_of(request)
    try:
        metrics.QUEUE_DEPTH.set(await services.queue.depth())
    except QueueUnavailable:
        metrics.QUEUE_DEPTH.set(float("nan"))
    metrics.OPEN_SUBSCRIPTIONS.set(services.events.watcher_count)
    answers = await asyncio.gather(*(probe.ping() for probe in _comfy_probes(request)))
    metrics.COMFY_UP.set(1.0 if any(answers) else 0.0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
