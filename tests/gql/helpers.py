"""Small helpers shared by the API tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

RESTORE = "/api/v1/restoration/restore"

JOB_FIELDS = "id status denoise originalImageUrl processedImageUrl errorMessage progress createdAt updatedAt"
RESTORE_MUTATION = (
    f"mutation($file: Upload!, $denoise: Float) {{ restoreImage(file: $file, denoise: $denoise) {{ {JOB_FIELDS} }} }}"
)


async def post_photo(
    client: httpx.AsyncClient, data: bytes, *, name: str = "photo.jpg", content_type: str = "image/jpeg", **fields: Any
) -> httpx.Response:
    return await client.post(RESTORE, files={"file": (name, data, content_type)}, data=fields)


async def graphql(client: httpx.AsyncClient, query: str, **variables: Any) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables})


async def graphql_upload(
    client: httpx.AsyncClient, data: bytes, *, denoise: float | None = None, name: str = "photo.jpg"
) -> httpx.Response:
    operations = {"query": RESTORE_MUTATION, "variables": {"file": None, "denoise": denoise}}
    return await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "application/octet-stream")},
    )
