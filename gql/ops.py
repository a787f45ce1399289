"""The operators' endpoints, no token needed: `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from comfy.client import ComfyClient
from gql.context import Services, services_of
from models.db import database_answers
from storage.errors import StorageError
from tasks import metrics
from tasks.queue import QueueUnavailable

router = APIRouter(include_in_schema=False)


def _comfy_probe(request: Request) -> ComfyClient:
    probe: ComfyClient = request.app.state.comfy_probe
    return probe


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
    checks["comfyui"] = "ok" if await _comfy_probe(request).ping() else "unavailable"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "dependencies": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    services = services_of(request)
    try:
        metrics.QUEUE_DEPTH.set(await services.queue.depth())
    except QueueUnavailable:
        metrics.QUEUE_DEPTH.set(float("nan"))
    metrics.OPEN_SUBSCRIPTIONS.set(services.events.watcher_count)
    metrics.COMFY_UP.set(1.0 if await _comfy_probe(request).ping() else 0.0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
