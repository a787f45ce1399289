"""What a request handler gets: the long-lived services (built once in the lifespan) and the caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from gql.auth import JwtVerifier, Principal, bearer_token
from storage.base import ObjectStore
from storage.urls import ImageUrls
from tasks.events import JobEventHub
from tasks.queue import JobQueue

# Full decodes of large images are the API's one memory-heavy step: bound how many run at once.
MAX_CONCURRENT_DECODES = 2


@dataclass
class Services:
    storage: ObjectStore
    urls: ImageUrls
    queue: JobQueue
    verifier: JwtVerifier
    events: JobEventHub
    max_upload_bytes: int
    max_image_pixels: int
    default_denoise: float
    decode_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_DECODES))


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller named by the request's `Authorization: Bearer` header; AuthError otherwise."""
    token = bearer_token(connection.headers.get("authorization"))
    return await services_of(connection).verifier.verify(token)
