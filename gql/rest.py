"""REST aliases for older clients; they call the same service functions as GraphQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from gql.auth import Principal
from gql.context import Services, authenticate, services_of
from gql.jobs import JobView, get_job, submit_restoration
from gql.uploads import read_form, single_file

CurrentUser = Annotated[Principal, Depends(authenticate)]
CurrentServices = Annotated[Services, Depends(services_of)]


class Job(BaseModel):
    id: str
    status: str
    denoise: float
    original_image_url: str
    processed_image_url: str | None
    error_message: str | None
    progress: float | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: JobView) -> Job:
        return cls(**{**dataclasses.asdict(view), "id": str(view.id), "status": view.status.value})


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid bearer token"},
    503: {"model": Problem, "description": "a dependency is unavailable; retry after `Retry-After` seconds"},
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

router = APIRouter(prefix="/api/v1/restoration", tags=["restoration"])


@router.post(
    "/restore",
    status_code=202,
    response_model=Job,
    openapi_extra=UPLOAD_BODY,
    responses={
        **ERRORS,
        400: {"model": Problem, "description": "malformed multipart body"},
        413: {"model": Problem, "description": "file or image too large"},
        415: {"model": Problem, "description": "not a JPEG, PNG, HEIC/HEIF or WebP image"},
        422: {"model": Problem, "description": "missing or invalid field"},
    },
)
async def restore(request: Request, response: Response, user: CurrentUser, services: CurrentServices) -> Job:
    """Upload a photo to restore; answers at once with the pending job."""
    try:
        form = await read_form(request)
        upload = single_file(form, "file")
        denoise = form.get("denoise")
        view = await submit_restoration(services=services, user_id=user.user_id, upload=upload, denoise=denoise)
    finally:
        await request.close()
    response.headers["Location"] = f"{router.prefix}/jobs/{view.id}"
    return Job.from_view(view)


@router.get("/jobs/{job_id}", response_model=Job, responses={**ERRORS, 404: {"model": Problem}})
async def job(job_id: str, user: CurrentUser, services: CurrentServices) -> Job:
    """The caller's job; 404 when it does not exist or belongs to someone else."""
    return Job.from_view(await get_job(services=services, user_id=user.user_id, job_id=job_id))
