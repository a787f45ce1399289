"""What a request handler gets: the long-lived services (built once in the lifespan) and the caller.

`Services` is built by the composition root and kept on `app.state`; `GraphQLContext` adds the
authenticated caller for one GraphQL operation, and `Info` is the resolvers' typed `info`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection, Request
from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from gql.auth import AuthError, JwtVerifier, Principal, bearer_token
from gql.idempotency import IdempotencyStore
from gql.live import JobEventHub
from gql.uploads import is_multipart, read_form, validate_graphql_multipart
from gql.views import JobView, SmallCache
from storage.base import ObjectStore
from storage.urls import ImageUrls
from tasks.queue import JobQueue

# Views minted for events, shared by every watcher of the job (one set of signed URLs per event
# instead of one per watcher); a few per live job is plenty.
VIEW_CACHE_SIZE = 4096
# Full decodes of large images are the API's one memory-heavy step: bound how many run at once.
MAX_CONCURRENT_DECODES = 2


@dataclass
class Services:
    storage: ObjectStore
    urls: ImageUrls
    queue: JobQueue
    verifier: JwtVerifier
    events: JobEventHub
    # Every user's idempotency keys (IDEMPOTENCY_TTL_SECONDS), in Redis.
    idempotency: IdempotencyStore
    max_upload_bytes: int
    max_image_pixels: int
    default_denoise: float
    upload_ttl_seconds: int
    # MAX_PENDING_JOBS_PER_USER: a user with this many pending jobs gets 429 (None: no limit).
    max_pending_jobs_per_user: int | None = None
    decode_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_DECODES))
    views: SmallCache[JobView] = field(default_factory=lambda: SmallCache(VIEW_CACHE_SIZE))


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller named by the request's `Authorization: Bearer` header; AuthError otherwise."""
    token = bearer_token(connection.headers.get("authorization"))
    return await services_of(connection).verifier.verify(token)


class GraphQLContext(BaseContext):
    def __init__(self, *, services: Services, principal: Principal | None) -> None:
        super().__init__()
        self.services = services
        self.principal = principal

    @property
    def user_id(self) -> str:
        if self.principal is None:
            raise AuthError("missing bearer token")
        return self.principal.user_id


Info = StrawberryInfo[GraphQLContext, None]


async def graphql_context(connection: HTTPConnection) -> AsyncIterator[GraphQLContext]:
    """Authenticate HTTP operations up front, so a bad token is a real 401 (not a 200 error).

    The GraphiQL page (a GET without a query) needs no token; websockets authenticate from their
    `connection_init` payload instead (the router's `on_ws_connect`). Multipart bodies are parsed
    and checked against the multipart request spec here (HTTP 400 when malformed); Strawberry
    reuses the parsed form.
    """
    services = services_of(connection)
    if connection.scope["type"] != "http":
        yield GraphQLContext(services=services, principal=None)
        return
    request = connection if isinstance(connection, Request) else Request(connection.scope)
    if request.method == "GET" and "query" not in request.query_params:
        yield GraphQLContext(services=services, principal=None)
        return
    principal = await authenticate(request)
    try:
        if request.method == "POST" and is_multipart(request):
            validate_graphql_multipart(await read_form(request))
        yield GraphQLContext(services=services, principal=principal)
    finally:
        await request.close()
