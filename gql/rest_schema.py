"""The REST API's wire shapes (the job, a page of jobs, a problem, an upload ticket) and what the
OpenAPI document says of them: examples, request bodies read by hand, shared responses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from gql.direct_uploads import TicketView
from gql.views import JobView
from models.error_codes import ErrorCode

# The contract's job statuses, as the REST job spells them.
JobStatusName = Literal["pending", "processing", "completed", "failed", "cancelled"]


class Job(BaseModel):
    id: str
    status: JobStatusName
    denoise: float
    original_image_url: str
    processed_image_url: str | None
    error_message: str | None
    error_code: ErrorCode | None = Field(description="Set exactly when failed.")
    retryable: bool | None = Field(description="Set exactly when failed: may submitting the photo again succeed?")
    progress: float | None
    queue_position: int | None = Field(
        description="While pending: the 1-based place among all pending jobs, of every user, in start order."
    )
    eta_seconds: float | None = Field(
        description="While pending or processing: estimated seconds until done, from recent jobs (null until measured)."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: JobView) -> Job:
        return cls(**{**dataclasses.asdict(view), "id": str(view.id), "status": view.status.value})


class JobList(BaseModel):
    jobs: list[Job] = Field(description="the caller's jobs, newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null exactly when no more follow")


class Problem(BaseModel):
    detail: str


class UploadTicket(BaseModel):
    id: str
    url: str = Field(description="where to send the photo's bytes, with `method` and every header in `headers`")
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="every header the upload must carry, with these exact values")
    expires_at: datetime

    @classmethod
    def from_view(cls, view: TicketView) -> UploadTicket:
        return cls(**{**dataclasses.asdict(view), "id": str(view.id)})


def _job_example(**values: Any) -> dict[str, Any]:
    """A job as the API returns it: every field of `Job`, null unless given."""
    return {name: values.get(name) for name in Job.model_fields}


_JOB_ID = "0b8f5d6e-3c2a-4f1e-9a7b-5d4c3b2a1f0e"
_EXAMPLE_TIMES = {"created_at": "2025-06-01T12:00:00Z", "updated_at": "2025-06-01T12:00:04Z"}
_ORIGINAL_URL = f"https://d1234.cloudfront.net/originals/{_JOB_ID}.jpg"
PENDING_EXAMPLE = _job_example(
    id=_JOB_ID, status="pending", denoise=0.5, original_image_url=_ORIGINAL_URL, **_EXAMPLE_TIMES
)
JOB_EXAMPLES = {
    "pending": {"summary": "just submitted", "value": PENDING_EXAMPLE},
    "processing": {
        "summary": "running",
        "value": _job_example(**{**PENDING_EXAMPLE, "status": "processing", "progress": 0.42}),
    },
    "completed": {
        "summary": "restored",
        "value": _job_example(
            **{
                **PENDING_EXAMPLE,
                "status": "completed",
                "processed_image_url": f"https://d1234.cloudfront.net/restored/{_JOB_ID}.png",
            }
        ),
    },
    "failed": {
        "summary": "failed",
        "value": _job_example(
            **{
                **PENDING_EXAMPLE,
                "status": "failed",
                "error_message": "No restoration server could be reached; please try again later.",
                "error_code": "COMFYUI_UNAVAILABLE",
                "retryable": True,
            }
        ),
    },
    "cancelled": {
        "summary": "cancelled by its owner",
        "value": _job_example(**{**PENDING_EXAMPLE, "status": "cancelled"}),
    },
}


def with_job_examples(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """`app.openapi` with `JOB_EXAMPLES` on every response that is a `Job`, nulls included: FastAPI
    drops None values from the document it generates, and a job always has every field."""

    def document() -> dict[str, Any]:
        spec = openapi()
        for operation in (op for path in spec.get("paths", {}).values() for op in path.values()):
            for response in operation.get("responses", {}).values():
                body = response.get("content", {}).get("application/json", {})
                if body.get("schema", {}).get("$ref") == "#/components/schemas/Job":
                    body["examples"] = JOB_EXAMPLES
        return spec

    return document


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "missing or invalid bearer token",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    },
    503: {
        "model": Problem,
        "description": "a dependency is unavailable; retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
    },
}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "JPEG, PNG, HEIC/HEIF or WebP"},
                        "denoise": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                }
            }
        },
    }
}

# The answer to both submit paths: the pending job and where to read it.
ACCEPTED: dict[str, Any] = {
    "description": "accepted: the job, still pending, with the original already stored",
    "headers": {
        "Location": {"description": "the job's URL, `/api/v1/restoration/jobs/{id}`", "schema": {"type": "string"}},
        "Idempotent-Replayed": {
            "description": "`true` when this is the job an earlier request with the same `Idempotency-Key` made",
            "schema": {"type": "string", "enum": ["true"]},
        },
    },
}

REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_CONFLICT = {
    "model": Problem,
    "description": "the `Idempotency-Key` was already used with another photo or denoise, or is still in use",
}


def _json_body(schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


TICKET_BODY = _json_body(
    {
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {
                "type": "integer",
                "minimum": 1,
                "example": 5_600_000,
                "description": "the photo's exact length in bytes, at most MAX_UPLOAD_BYTES",
            },
            "content_type": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
                "example": "image/jpeg",
                "description": "a media type; when given, the upload must carry it as its Content-Type",
            },
        },
    },
    required=True,
)
RESTORE_UPLOAD_BODY = _json_body(
    {"type": "object", "properties": {"denoise": {"type": "number", "minimum": 0, "maximum": 1}}}, required=False
)
