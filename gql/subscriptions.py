"""GraphQL subscriptions: `jobUpdated` streams a job's state until it is completed or failed;
`jobsUpdated` streams every change of any of the caller's jobs and never ends by itself."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gql.context import Info
from gql.errors import KNOWN, graphql_error
from gql.types import RestorationJob
from gql.watching import watch_job, watch_user_jobs


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The job's current state, then every change; ends after COMPLETED/FAILED.")
    async def job_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[RestorationJob, None]:
        context = info.context
        try:
            async for view in watch_job(services=context.services, user_id=context.user_id, job_id=str(id)):
                yield RestorationJob.from_view(view)
        except KNOWN as exc:
            raise graphql_error(exc) from exc

    @strawberry.subscription(
        description="Every change of any of the caller's jobs from now on (never another user's); never ends by itself."
    )
    async def jobs_updated(self, info: Info) -> AsyncGenerator[RestorationJob, None]:
        context = info.context
        try:
            async for view in watch_user_jobs(services=context.services, user_id=context.user_id):
                yield RestorationJob.from_view(view)
        except KNOWN as exc:
            raise graphql_error(exc) from exc
