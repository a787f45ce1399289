"""GraphQL types, converted from service views in one place (`RestorationJob.from_view`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum

import strawberry

from gql.direct_uploads import TicketView
from gql.jobs import JobPage, JobView
from models.error_codes import ErrorCode as ModelErrorCode
from models.job import JobStatus as ModelStatus


@strawberry.enum(name="JobStatus")
class JobStatus(Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def to_model(self) -> ModelStatus:
        return ModelStatus(self.value)


@strawberry.enum(name="ErrorCode", description="Why a job failed (see the contract's table).")
class ErrorCode(Enum):
    COMFYUI_UNAVAILABLE = "COMFYUI_UNAVAILABLE"
    COMFYUI_REJECTED = "COMFYUI_REJECTED"
    COMFYUI_ERROR = "COMFYUI_ERROR"
    JOB_LOST = "JOB_LOST"
    TIMEOUT = "TIMEOUT"
    STORAGE_ERROR = "STORAGE_ERROR"
    INTERNAL = "INTERNAL"

    @classmethod
    def of(cls, code: ModelErrorCode | None) -> ErrorCode | None:
        return cls(code.value) if code is not None else None


@strawberry.type
class RestorationJob:
    id: strawberry.ID
    status: JobStatus
    denoise: float
    original_image_url: str
    processed_image_url: str | None
    error_message: str | None
    error_code: ErrorCode | None = strawberry.field(description="Set exactly when FAILED.")
    retryable: bool | None = strawberry.field(
        description="Set exactly when FAILED: whether submitting the same photo again may succeed."
    )
    progress: float | None
    queue_position: int | None = strawberry.field(
        description="While PENDING: the 1-based place among all pending jobs, of every user, in start order."
    )
    eta_seconds: float | None = strawberry.field(
        description="While PENDING or PROCESSING: estimated seconds until done, from recent jobs (null until measured)."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: JobView) -> RestorationJob:
        fields = dataclasses.asdict(view)
        return cls(
            **{
                **fields,
                "id": strawberry.ID(str(view.id)),
                "status": JobStatus(view.status.value),
                "error_code": ErrorCode.of(view.error_code),
            }
        )


@strawberry.type
class JobEdge:
    cursor: str
    node: RestorationJob


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: JobPage) -> JobConnection:
        return cls(
            edges=[JobEdge(cursor=cursor, node=RestorationJob.from_view(view)) for cursor, view in page.jobs],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


@strawberry.type
class Header:
    name: str
    value: str


@strawberry.type(
    description="Send exactly the declared bytes to `url` with `method` and every header, then `restoreUpload`."
)
class UploadTicket:
    id: strawberry.ID
    url: str
    method: str
    headers: list[Header]
    expires_at: datetime

    @classmethod
    def from_view(cls, view: TicketView) -> UploadTicket:
        return cls(
            id=strawberry.ID(str(view.id)),
            url=view.url,
            method=view.method,
            headers=[Header(name=name, value=value) for name, value in view.headers.items()],
            expires_at=view.expires_at,
        )
