"""Developer surfaces: OpenAPI docs for the REST aliases, health endpoints without a token."""

from __future__ import annotations

from tests.fixtures.services import ApiServer


async def test_openapi_documents_the_rest_aliases(api: ApiServer) -> None:
    async with api.client() as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
        docs = await anonymous.get("/docs")
    assert docs.status_code == 200
    assert "/api/v1/restoration/restore" in spec["paths"]
    assert "/api/v1/restoration/jobs/{job_id}" in spec["paths"]
    body = spec["paths"]["/api/v1/restoration/restore"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body


async def test_health_needs_no_token(api: ApiServer) -> None:
    async with api.client() as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = await anonymous.get("/readyz")
    assert ready.status_code == 200
    # ComfyUI is reported but not required (these tests' API points at a closed port).
    assert ready.json()["dependencies"] == {"redis": "ok", "storage": "ok", "database": "ok", "comfyui": "unavailable"}


async def test_readiness_fails_while_the_database_is_away(api: ApiServer, pg_proxy) -> None:
    await pg_proxy.cut()
    try:
        async with api.client() as anonymous:
            ready = await anonymous.get("/readyz")
    finally:
        await pg_proxy.restore()
    assert ready.status_code == 503
    assert ready.json()["dependencies"]["database"] == "unavailable"


async def test_metrics_expose_the_job_counters_and_gauges(api: ApiServer) -> None:
    async with api.client() as anonymous:
        response = await anonymous.get("/metrics")
    assert response.status_code == 200
    for name in (
        "restoration_jobs_created_total",
        "restoration_jobs_completed_total",
        "restoration_queue_depth",
        "restoration_queue_wait_seconds_bucket",
        "restoration_comfyui_execution_seconds_bucket",
        "restoration_upload_seconds_bucket",
        "restoration_job_seconds_bucket",
        "restoration_open_subscriptions",
        "restoration_comfyui_up 0.0",
    ):
        assert name in response.text
