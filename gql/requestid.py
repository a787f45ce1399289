"""A request id on every API log line and in every response.

`RequestIdMiddleware` (pure ASGI, so streamed uploads and websockets pass through untouched)
takes the client's `X-Request-ID` when it is 1-128 visible ASCII characters, or makes one up,
keeps it in a context variable for the duration of the request, and echoes it in the response's
`X-Request-ID` header (the websocket handshake's too). `RequestIdFilter`, attached to the log
handler, copies it onto every record logged while the request runs, as the field `request_id`.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID_HEADER", "RequestIdFilter", "RequestIdMiddleware", "current_request_id", "request_id_headers"]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
# Visible ASCII only: an id is copied into log lines and headers, where control characters,
# spaces or non-ASCII bytes could forge or split entries. 128 fits a UUID, a trace id and a prefix.
MAX_REQUEST_ID_LENGTH = 128
_ACCEPTED_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_LENGTH}}}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def accepted_request_id(value: str | None) -> str | None:
    """`value` if it is usable as a request id, else None."""
    return value if value is not None and _ACCEPTED_ID.fullmatch(value) else None


def request_id_headers() -> dict[str, str]:
    """The response header for the current request's id, for responses sent outside the middleware."""
    request_id = current_request_id.get()
    return {REQUEST_ID_HEADER: request_id} if request_id is not None else {}


class RequestIdMiddleware:
    """Gives every HTTP request and websocket an id, for its log lines and its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((value for key, value in scope["headers"] if key == _HEADER_KEY), None)
        request_id = accepted_request_id(given.decode("latin-1") if given is not None else None) or uuid.uuid4().hex
        encoded = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "websocket.accept":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_KEY]
                message["headers"] = [*headers, (_HEADER_KEY, encoded)]
            await send(message)

        token = current_request_id.set(request_id)
        await self.app(scope, receive, send_with_id)
        # Reset only on a normal return: when the app raises, the server-error handler (which runs
        # outside every middleware) and the server's own traceback still log this request's id.
        # Each request runs in a task of its own, so the id cannot reach another request.
        current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
