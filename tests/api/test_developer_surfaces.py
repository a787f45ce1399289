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
    assert ready.json()["dependencies"] == {"redis": "ok", "storage": "ok", "database": "ok"}
