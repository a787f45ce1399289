"""Developer surfaces: OpenAPI docs for the REST aliases, health endpoints without a token."""

from __future__ import annotations

import uuid
from typing import Any
from unittest.mock import ANY

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


JOB_STATUSES = ["pending", "processing", "completed", "failed", "cancelled"]  # the contract's
REST_OPERATIONS = [
    ("post", "/api/v1/restoration/restore"),
    ("get", "/api/v1/restoration/jobs/{job_id}"),
    ("post", "/api/v1/restoration/jobs/{job_id}/cancel"),
    ("post", "/api/v1/restoration/uploads/{upload_id}/restore"),
]
# The one operation that answers with something else than a job (a direct-upload ticket, 201).
TICKET_OPERATION = ("post", "/api/v1/restoration/uploads")
LIST_OPERATION = ("get", "/api/v1/restoration/jobs")


async def openapi(api: ApiServer) -> dict[str, Any]:
    async with api.client() as anonymous:
        spec: dict[str, Any] = (await anonymous.get("/openapi.json")).json()
    return spec


async def test_openapi_declares_a_jwt_bearer_scheme_on_every_rest_operation(api: ApiServer) -> None:
    spec = await openapi(api)
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": ANY}}
    rest = [(method, path) for path, item in spec["paths"].items() for method in item if path.startswith("/api/")]
    assert sorted(rest) == sorted([*REST_OPERATIONS, TICKET_OPERATION, LIST_OPERATION])
    for method, path in rest:
        assert spec["paths"][path][method]["security"] == [{"bearer": []}], (method, path)


async def test_the_documented_scheme_leaves_the_401_as_it_was(api: ApiServer) -> None:
    async with api.client() as anonymous:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer not-a-jwt"}):
            response = await anonymous.get(f"/api/v1/restoration/jobs/{uuid.uuid4()}", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer"), headers
            assert list(response.json()) == ["detail"], headers


async def test_openapi_documents_the_location_and_retry_after_headers(api: ApiServer) -> None:
    spec = await openapi(api)
    restore = spec["paths"]["/api/v1/restoration/restore"]["post"]["responses"]
    assert restore["202"]["headers"]["Location"]["schema"] == {"type": "string"}
    for method, path in [*REST_OPERATIONS, TICKET_OPERATION, LIST_OPERATION]:
        unavailable = spec["paths"][path][method]["responses"]["503"]
        assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer"}, (method, path)


async def test_openapi_gives_the_job_status_as_an_enum(api: ApiServer) -> None:
    spec = await openapi(api)
    assert spec["components"]["schemas"]["Job"]["properties"]["status"]["enum"] == JOB_STATUSES


async def test_openapi_job_examples_have_every_field_and_a_valid_status(api: ApiServer) -> None:
    spec = await openapi(api)
    job = spec["components"]["schemas"]["Job"]
    for method, path in REST_OPERATIONS:
        responses = spec["paths"][path][method]["responses"]
        code = next(code for code in responses if code.startswith("2"))  # 202 for a submit, else 200
        examples = responses[code]["content"]["application/json"]["examples"]
        assert {example["value"]["status"] for example in examples.values()} >= {"pending", "completed", "failed"}
        for example in examples.values():
            value = example["value"]
            assert set(value) == set(job["properties"]), (path, example["summary"])  # nulls included
            assert value["status"] in JOB_STATUSES
            assert (value["processed_image_url"] is not None) == (value["status"] == "completed")
            assert (value["error_message"] is not None) == (value["status"] == "failed")


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
        "restoration_jobs_cancelled_total",
        "restoration_queue_depth",
        "restoration_queue_wait_seconds_bucket",
        "restoration_comfyui_execution_seconds_bucket",
        "restoration_upload_seconds_bucket",
        "restoration_job_seconds_bucket",
        "restoration_open_subscriptions",
        "restoration_comfyui_up 0.0",
    ):
        assert name in response.text
