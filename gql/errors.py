"""The service's errors and the ONE place they become HTTP statuses and GraphQL codes.

    ServiceError                       raised by the service functions on bad requests
    ├── BadInput                       422 / BAD_USER_INPUT        a field is missing or out of range
    ├── MalformedRequest               400 / (HTTP 400)            the body cannot be parsed at all
    ├── NotFound                       404 / NOT_FOUND             missing, or not the caller's
    ├── Conflict                       409 / CONFLICT              the state forbids it (an upload not sent yet)
    ├── PayloadTooLarge                413 / PAYLOAD_TOO_LARGE     file over MAX_UPLOAD_BYTES
    ├── UnsupportedMediaType           415 / UNSUPPORTED_MEDIA_TYPE
    └── TooManyPendingJobs             429 / TOO_MANY_REQUESTS     MAX_PENDING_JOBS_PER_USER reached
                                                                   (with Retry-After; a code beyond the contract's list)

The boundaries' own exceptions are mapped here too: AuthError → 401, ImageTooLarge → 413,
UnsupportedImage → 415, and every "dependency unavailable" (AuthUnavailable, StorageError,
DatabaseUnavailable, QueueUnavailable) → 503 with Retry-After / SERVICE_UNAVAILABLE.
Anything else is a bug: 500 / INTERNAL_SERVER_ERROR with a masked message (never a traceback).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from graphql import GraphQLError

from comfy.images import ImageTooLarge, UnsupportedImage
from gql.auth import AuthError, AuthUnavailable
from gql.live import EventStreamUnavailable
from gql.requestid import request_id_headers
from models.repository import DatabaseUnavailable
from storage.errors import StorageError
from tasks.queue import QueueUnavailable

log = logging.getLogger("restore.api")

# Seconds a client should wait before retrying after a 503: long enough for a dependency to
# come back from a restart, short enough that a person does not give up.
RETRY_AFTER_SECONDS = 5


class ServiceError(Exception):
    status = 400
    code = "BAD_REQUEST"


class BadInput(ServiceError):
    status = 422
    code = "BAD_USER_INPUT"


class MalformedRequest(ServiceError):
    status = 400
    code = "BAD_REQUEST"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ServiceError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


# Seconds a user at MAX_PENDING_JOBS_PER_USER should wait before submitting again: about the
# time one restoration takes, after which one of their pending jobs has usually started.
PENDING_RETRY_AFTER_SECONDS = 30


class TooManyPendingJobs(ServiceError):
    status = 429
    code = "TOO_MANY_REQUESTS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"you already have {limit} jobs waiting (the most one user may have pending); "
            "submit again once one of them has started"
        )
        self.limit = limit


@dataclass(frozen=True)
class Problem:
    status: int
    code: str
    message: str
    headers: dict[str, str]


UNAVAILABLE = (AuthUnavailable, StorageError, DatabaseUnavailable, QueueUnavailable, EventStreamUnavailable)
KNOWN = (ServiceError, AuthError, ImageTooLarge, UnsupportedImage, *UNAVAILABLE)


def classify(exc: BaseException) -> Problem:
    if isinstance(exc, TooManyPendingJobs):
        return Problem(exc.status, exc.code, str(exc), {"Retry-After": str(PENDING_RETRY_AFTER_SECONDS)})
    if isinstance(exc, ServiceError):
        return Problem(exc.status, exc.code, str(exc), {})
    if isinstance(exc, AuthError):
        return Problem(401, "UNAUTHENTICATED", f"not authenticated: {exc}", {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ImageTooLarge):
        return Problem(413, "PAYLOAD_TOO_LARGE", str(exc), {})
    if isinstance(exc, UnsupportedImage):
        return Problem(415, "UNSUPPORTED_MEDIA_TYPE", str(exc), {})
    if isinstance(exc, UNAVAILABLE):
        return Problem(
            503,
            "SERVICE_UNAVAILABLE",
            f"{_dependency(exc)} unavailable, please retry shortly",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return Problem(500, "INTERNAL_SERVER_ERROR", "internal server error", {})


def _dependency(exc: BaseException) -> str:
    if isinstance(exc, AuthUnavailable):
        return "authentication (JWKS)"
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, DatabaseUnavailable):
        return "database"
    if isinstance(exc, EventStreamUnavailable):
        return "live updates"
    return "job queue"


def graphql_error(exc: BaseException, *, like: GraphQLError | None = None) -> GraphQLError:
    """The GraphQL form of an exception: the contract's code, and no internals for the unknown."""
    problem = classify(exc)
    return GraphQLError(
        message=problem.message,
        nodes=like.nodes if like else None,
        source=like.source if like else None,
        positions=like.positions if like else None,
        path=like.path if like else None,
        extensions={"code": problem.code},
    )


def add_error_handlers(app: FastAPI) -> None:
    """Answer every exception a REST route raises with its status and `{"detail"}`."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        problem = classify(exc)
        if problem.status >= 500 and problem.status != 503:
            log.error("api.unexpected_error", extra={"path": request.url.path}, exc_info=exc)
        # A 500 is answered outside every middleware (Starlette's server-error handler), so the
        # request id middleware cannot add its header there.
        headers = {**problem.headers, **request_id_headers()}
        return JSONResponse({"detail": problem.message}, status_code=problem.status, headers=headers)

    for exc_type in KNOWN:
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(Exception, handle)
