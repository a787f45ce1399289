"""GraphQL mutations: `restoreImage` (a GraphQL multipart request)."""

from __future__ import annotations

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from gql.context import Info
from gql.errors import BadInput
from gql.jobs import submit_restoration
from gql.types import RestorationJob


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Upload a photo to restore; the job is queued at once.")
    async def restore_image(self, info: Info, file: Upload, denoise: float | None = None) -> RestorationJob:
        if not isinstance(file, UploadFile):
            raise BadInput("file must be uploaded as a GraphQL multipart request")
        context = info.context
        view = await submit_restoration(
            services=context.services, user_id=context.user_id, upload=file, denoise=denoise
        )
        return RestorationJob.from_view(view)
