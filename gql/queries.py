"""GraphQL queries: the caller's jobs only."""

from __future__ import annotations

import strawberry

from gql.context import Info
from gql.errors import NotFound
from gql.jobs import get_job, list_jobs
from gql.types import JobConnection, JobStatus, RestorationJob


@strawberry.type
class Query:
    @strawberry.field(description="The caller's job; null when it does not exist or is not the caller's.")
    async def job(self, info: Info, id: strawberry.ID) -> RestorationJob | None:
        context = info.context
        try:
            view = await get_job(services=context.services, user_id=context.user_id, job_id=str(id))
        except NotFound:
            return None
        return RestorationJob.from_view(view)

    @strawberry.field(description="The caller's jobs, newest first.")
    async def jobs(
        self, info: Info, first: int | None = 20, after: str | None = None, status: JobStatus | None = None
    ) -> JobConnection:
        context = info.context
        page = await list_jobs(
            services=context.services,
            user_id=context.user_id,
            first=20 if first is None else first,
            after=after,
            status=status.to_model() if status else None,
        )
        return JobConnection.from_page(page)
