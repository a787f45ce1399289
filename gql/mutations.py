"""GraphQL mutations: `restoreImage` (a GraphQL multipart request), the direct upload's
`createUpload` and `restoreUpload`, and `cancelJob`. Both submits take an `idempotencyKey` (the
REST `Idempotency-Key`, one key space per user): a retry with the same key and content gets the
first job back, other content is CONFLICT."""

from __future__ import annotations

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from gql.context import Info
from gql.direct_uploads import create_upload, restore_upload
from gql.errors import BadInput
from gql.jobs import cancel_job, submit_restoration
from gql.types import RestorationJob, UploadTicket


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Upload a photo to restore; the job is queued at once. A retry with the same"
        " `idempotencyKey`, photo and denoise gets the first job back; other content is CONFLICT."
    )
    async def restore_image(
        self, info: Info, file: Upload, denoise: float | None = None, idempotency_key: str | None = None
    ) -> RestorationJob:
        if not isinstance(file, UploadFile):
            raise BadInput("file must be uploaded as a GraphQL multipart request")
        context = info.context
        submission = await submit_restoration(
            services=context.services,
            user_id=context.user_id,
            upload=file,
            denoise=denoise,
            idempotency_key=idempotency_key,
        )
        return RestorationJob.from_view(submission.job)

    @strawberry.mutation(
        description="A signed URL to send a large photo straight to storage; single use, expires after a while."
    )
    async def create_upload(self, info: Info, size: int, content_type: str | None = None) -> UploadTicket:
        context = info.context
        view = await create_upload(
            services=context.services, user_id=context.user_id, size=size, content_type=content_type
        )
        return UploadTicket.from_view(view)

    @strawberry.mutation(
        description="Restore the photo sent to an upload's URL; the job is queued at once. A retry"
        " with the same `idempotencyKey`, upload (or photo) and denoise gets the first job back."
    )
    async def restore_upload(
        self, info: Info, upload_id: strawberry.ID, denoise: float | None = None, idempotency_key: str | None = None
    ) -> RestorationJob:
        context = info.context
        submission = await restore_upload(
            services=context.services,
            user_id=context.user_id,
            upload_id=upload_id,
            denoise=denoise,
            idempotency_key=idempotency_key,
        )
        return RestorationJob.from_view(submission.job)

    @strawberry.mutation(
        description="Cancel one of your jobs: a PENDING one is CANCELLED at once and never run; a PROCESSING one "
        "becomes CANCELLED within 5 s (its run is stopped, no result is kept). The original is kept. "
        "NOT_FOUND when missing or not yours; CONFLICT (unchanged) when it already finished."
    )
    async def cancel_job(self, info: Info, id: strawberry.ID) -> RestorationJob:
        context = info.context
        view = await cancel_job(services=context.services, user_id=context.user_id, job_id=str(id))
        return RestorationJob.from_view(view)
