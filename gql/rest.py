"""REST aliases for older clients; they call the same service functions as GraphQL.

The OpenAPI document (`/openapi.json`, Swagger UI at `/docs`) declares the bearer scheme on every
operation, so Swagger's Authorize button takes a token (the dev token with `restoration dev`);
checking it stays with `authenticate` (401, `WWW-Authenticate: Bearer`, `{"detail"}`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, Security
from fastapi.security import HTTPBearer

from gql.auth import Principal
from gql.context import Services, authenticate, services_of
from gql.direct_uploads import create_upload, restore_upload
from gql.errors import BadInput
from gql.idempotency import parse_key
from gql.jobs import (
    CONTRACT_STATUSES,
    MAX_PAGE_SIZE,
    Submission,
    cancel_job,
    get_job,
    list_jobs,
    submit_restoration,
)
from gql.rest_schema import (
    ACCEPTED,
    ERRORS,
    IDEMPOTENCY_CONFLICT,
    REPLAYED_HEADER,
    RESTORE_UPLOAD_BODY,
    TICKET_BODY,
    UPLOAD_BODY,
    Job,
    JobList,
    Problem,
    UploadTicket,
)
from gql.uploads import read_form, single_file

CurrentUser = Annotated[Principal, Depends(authenticate)]
CurrentServices = Annotated[Services, Depends(services_of)]
# Documents the scheme only: without a token it yields None and `authenticate` answers the 401.
BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An Auth0 RS256 access token (with `restoration dev`: the dev token it prints).",
    auto_error=False,
)


DEFAULT_PAGE_SIZE = 20


def parse_limit(value: str | None) -> int:
    """`limit` as the contract has it: ASCII digits, 1..MAX_PAGE_SIZE (checked by `list_jobs`)."""
    if value is None:
        return DEFAULT_PAGE_SIZE
    if not (value.isascii() and value.isdigit()) or len(value) > 3:
        raise BadInput(f"limit must be an integer between 1 and {MAX_PAGE_SIZE}")
    return int(value)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1-255 visible ASCII characters; a retry with the same key and the same photo and"
        " denoise gets the first request's job back (remembered IDEMPOTENCY_TTL_SECONDS, per user)",
        # Documented, judged by `parse_key` (so a bad key is a 422 `{"detail"}` like every other).
        json_schema_extra={"pattern": "^[!-~]{1,255}$", "minLength": 1, "maxLength": 255},
    ),
]


def idempotency_key(request: Request) -> str | None:
    """The request's one `Idempotency-Key` (None without); 422 when it is repeated or invalid."""
    values = request.headers.getlist("idempotency-key")
    if len(values) > 1:
        raise BadInput("send one Idempotency-Key header, not several")
    return parse_key(values[0]) if values else None


def accepted(submission: Submission, response: Response) -> Job:
    response.headers["Location"] = f"{router.prefix}/jobs/{submission.job.id}"
    if submission.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return Job.from_view(submission.job)


router = APIRouter(prefix="/api/v1/restoration", tags=["restoration"], dependencies=[Security(BEARER)])


@router.post(
    "/restore",
    status_code=202,
    response_model=Job,
    openapi_extra=UPLOAD_BODY,
    responses={
        202: ACCEPTED,
        **ERRORS,
        400: {"model": Problem, "description": "malformed multipart body"},
        413: {"model": Problem, "description": "file or image too large"},
        409: IDEMPOTENCY_CONFLICT,
        415: {"model": Problem, "description": "not a JPEG, PNG, HEIC/HEIF or WebP image"},
        422: {"model": Problem, "description": "missing or invalid field, or an invalid `Idempotency-Key`"},
    },
)
async def restore(
    request: Request,
    response: Response,
    user: CurrentUser,
    services: CurrentServices,
    idempotency: IdempotencyKey = None,  # documents the header; read by `idempotency_key`
) -> Job:
    """Upload a photo to restore; answers at once with the pending job."""
    try:
        key = idempotency_key(request)  # before the body is read: a bad key costs no upload
        form = await read_form(request)
        upload = single_file(form, "file")
        denoise = form.get("denoise")
        submission = await submit_restoration(
            services=services, user_id=user.user_id, upload=upload, denoise=denoise, idempotency_key=key
        )
    finally:
        await request.close()
    return accepted(submission, response)


# Parameters are read as text and judged by the service, so every bad value is a 422 `{"detail"}`
# like the rest of the API (FastAPI's own validation answers a list of errors instead).
StatusParam = Annotated[
    str | None,
    Query(description="only jobs with this status", json_schema_extra={"enum": list(CONTRACT_STATUSES)}),
]
LimitParam = Annotated[
    str | None,
    Query(
        description=f"page size, 1-{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})",
        json_schema_extra={"pattern": "^[0-9]+$", "example": "20"},
    ),
]
CursorParam = Annotated[str | None, Query(description="a `next_cursor` from an earlier page")]


@router.get(
    "/jobs",
    response_model=JobList,
    responses={
        200: {"description": "a page of the caller's jobs, newest first"},
        **ERRORS,
        422: {"model": Problem, "description": "bad `status`, `limit` or `cursor`"},
    },
)
async def jobs(
    user: CurrentUser,
    services: CurrentServices,
    status: StatusParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> JobList:
    """The caller's jobs, newest first, a page at a time (keyset cursors)."""
    page = await list_jobs(
        services=services, user_id=user.user_id, first=parse_limit(limit), after=cursor, status=status
    )
    return JobList(
        jobs=[Job.from_view(view) for _, view in page.jobs],
        next_cursor=page.end_cursor if page.has_next_page else None,
    )


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    responses={
        200: {"description": "the job"},
        **ERRORS,
        404: {"model": Problem, "description": "no such job, or someone else's"},
    },
)
async def job(job_id: str, user: CurrentUser, services: CurrentServices) -> Job:
    """The caller's job; 404 when it does not exist or belongs to someone else."""
    return Job.from_view(await get_job(services=services, user_id=user.user_id, job_id=job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    responses={
        200: {"description": "the job, cancelled (a processing one may still say `processing` for a few seconds)"},
        **ERRORS,
        404: {"model": Problem, "description": "no such job, or someone else's"},
        409: {"model": Problem, "description": "the job already finished (completed, failed or cancelled): unchanged"},
    },
)
async def cancel(job_id: str, user: CurrentUser, services: CurrentServices) -> Job:
    """Cancel the caller's job: never sent to ComfyUI if still pending, its prompt stopped if
    processing; no result is stored, the original is kept."""
    return Job.from_view(await cancel_job(services=services, user_id=user.user_id, job_id=job_id))


async def _json_object(request: Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object (`{}` when optional and empty); 422 otherwise, as `{"detail"}`."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadInput("the body must be a JSON object")
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadInput("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object")
    return value


@router.post(
    "/uploads",
    operation_id="create_upload",
    status_code=201,
    response_model=UploadTicket,
    openapi_extra=TICKET_BODY,
    responses={
        201: {
            "description": "the ticket: send exactly `size` bytes to `url`, then restore the upload",
            "links": {
                "restoreUpload": {
                    "operationId": "restore_upload",
                    "parameters": {"upload_id": "$response.body#/id"},
                    "description": "restore the photo once it was sent to `url`",
                }
            },
        },
        **ERRORS,
        413: {"model": Problem, "description": "`size` over the upload limit"},
        422: {"model": Problem, "description": "`size` missing or not a positive integer, or a bad `content_type`"},
    },
)
async def new_upload(request: Request, user: CurrentUser, services: CurrentServices) -> UploadTicket:
    """A direct upload: a signed URL to send a large photo straight to storage (single use, expiring)."""
    body = await _json_object(request, required=True)
    view = await create_upload(
        services=services, user_id=user.user_id, size=body.get("size"), content_type=body.get("content_type")
    )
    return UploadTicket.from_view(view)


@router.post(
    "/uploads/{upload_id}/restore",
    operation_id="restore_upload",
    status_code=202,
    response_model=Job,
    openapi_extra=RESTORE_UPLOAD_BODY,
    responses={
        202: ACCEPTED,
        **ERRORS,
        404: {"model": Problem, "description": "no such upload: unknown, expired, already used or someone else's"},
        409: {
            "model": Problem,
            "description": "nothing was sent to the upload's URL yet, or the `Idempotency-Key` was already used"
            " with another photo or denoise (or is still in use)",
        },
        413: {"model": Problem, "description": "image too large"},
        415: {"model": Problem, "description": "not a JPEG, PNG, HEIC/HEIF or WebP image"},
        422: {
            "model": Problem,
            "description": "bad `denoise` or `Idempotency-Key`, or the uploaded length is not the declared `size`",
        },
    },
)
async def restore_uploaded(
    upload_id: str,
    request: Request,
    response: Response,
    user: CurrentUser,
    services: CurrentServices,
    idempotency: IdempotencyKey = None,  # documents the header; read by `idempotency_key`
) -> Job:
    """Restore the photo sent to an upload's URL; answers at once with the pending job."""
    key = idempotency_key(request)
    body = await _json_object(request, required=False)
    submission = await restore_upload(
        services=services, user_id=user.user_id, upload_id=upload_id, denoise=body.get("denoise"), idempotency_key=key
    )
    return accepted(submission, response)
