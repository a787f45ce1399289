"""What a request handler gets: the long-lived services (built once in the lifespan) and the caller."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from starlette.requests import HTTPConnection

from gql.auth import JwtVerifier, Principal, bearer_token
from storage.base import ObjectStore

if TYPE_CHECKING:
    from gql.jobs import JobView
from storage.urls import ImageUrls
from tasks.events import JobEventHub
from tasks.queue import JobQueue

V = TypeVar("V")

# Views minted for events, shared by every watcher of the job (one set of signed URLs per event
# instead of one per watcher); a few per live job is plenty.
VIEW_CACHE_SIZE = 4096


class SmallCache(Generic[V]):
    """A bounded least-recently-used map, for values that are costly to build and never change."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = build()
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


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
    views: SmallCache[JobView] = field(default_factory=lambda: SmallCache(VIEW_CACHE_SIZE))


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller named by the request's `Authorization: Bearer` header; AuthError otherwise."""
    token = bearer_token(connection.headers.get("authorization"))
    return await services_of(connection).verifier.verify(token)
