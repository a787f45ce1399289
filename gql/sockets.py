"""Websocket rules for both GraphQL subscription protocols, on top of Strawberry's handlers.

Whichever protocol a client speaks (`graphql-transport-ws`, or the legacy `graphql-ws`):

* a socket that has not sent `connection_init` within the init timeout is closed (4408), and any
  other message before it closes the socket (4401: nothing is served before authentication);
* a message larger than `MAX_WS_MESSAGE_BYTES` closes the socket (1009), before it is parsed;
  an operation without an id and a query closes it too (4400), and so, on graphql-transport-ws,
  does a message that is not a JSON object with a string `type` (the legacy protocol skips those
  once initialised, as its reference server does);
* a socket serves at most the router's `max_subscriptions_per_connection` operations at once;
* the socket lives no longer than its token: at the token's `exp` it is closed (4403; legacy
  clients get `connection_error` first), and an operation started after `exp` is refused the
  same way. The client reconnects with a fresh token.

Strawberry's own handlers do the rest (ping/pong, keep-alive, running operations).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Final

from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage as TransportInitMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message as TransportMessage
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage as LegacyInitMessage
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage, StartMessage

from gql.context import GraphQLContext
from gql.uploads import MAX_OPERATION_BYTES

log = logging.getLogger("restore.api")

# One websocket message carries one operation: the same ceiling as an HTTP operation body.
MAX_WS_MESSAGE_BYTES = MAX_OPERATION_BYTES

# Close codes. 4400/4401/4403/4408/4429 are graphql-transport-ws's own (PROTOCOL.md); the legacy
# protocol defines none, so it is given the same ones. 1009 is WebSocket's "message too big".
CLOSE_BAD_MESSAGE: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_INIT_TIMEOUT: Final = 4408
CLOSE_TOO_MANY_INITS: Final = 4429
CLOSE_TOO_BIG: Final = 1009

EXPIRED_REASON = "token expired"


class _Unparsable:
    """Stands for a text message that is not JSON (the legacy handler is told to skip those)."""


UNPARSABLE: Final = _Unparsable()


class BoundedWebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's ASGI adapter, refusing messages over `MAX_WS_MESSAGE_BYTES` (close 1009)
    before they are parsed, and yielding `UNPARSABLE` instead of silently dropping non-JSON text,
    so the handler decides whether junk is tolerable (it is not before `connection_init`)."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if _too_big(text):
                    log.info("graphql.ws_message_too_big", extra={"chars": len(text)})
                    await self.close(CLOSE_TOO_BIG, f"message too big: the limit is {MAX_WS_MESSAGE_BYTES} bytes")
                    return
                try:
                    message = self.view.decode_json(text)
                except json.JSONDecodeError as exc:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from exc
                    message = UNPARSABLE
                yield message
        except KeyError as exc:  # a binary frame: starlette's message has `bytes`, not `text`
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            pass


def _too_big(text: str) -> bool:
    # A character is 1-4 bytes in UTF-8: most messages are judged without encoding them.
    if len(text) > MAX_WS_MESSAGE_BYTES:
        return True
    return len(text) * 4 > MAX_WS_MESSAGE_BYTES and len(text.encode()) > MAX_WS_MESSAGE_BYTES


def _has_type(message: object) -> bool:
    return isinstance(message, dict) and isinstance(message.get("type"), str)


def _is_operation(message: Mapping[str, Any]) -> bool:
    """`id` and `payload.query` are strings, `variables` an object, `operationName` a string."""
    payload = message.get("payload")
    return (
        isinstance(message.get("id"), str)
        and isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("operationName") or "", str)
    )


class _TokenLifetime:
    """Runs `on_expiry` once when the connection's token expires (wall clock, like `exp`)."""

    def __init__(self, context: GraphQLContext, on_expiry: Callable[[], Any]) -> None:
        self._context = context
        self._on_expiry = on_expiry
        self._task: asyncio.Task[None] | None = None

    @property
    def expired(self) -> bool:
        principal = self._context.principal
        return principal is not None and principal.expires_at <= time.time()

    def start(self) -> None:
        if self._task is None and self._context.principal is not None:
            self._task = asyncio.create_task(self._close_at_expiry())

    async def _close_at_expiry(self) -> None:
        principal = self._context.principal
        if principal is None:
            return
        # Not a poll: a timer for the one moment the credentials stop being valid.
        await asyncio.sleep(max(0.0, principal.expires_at - time.time()))
        log.info("graphql.ws_token_expired", extra={"user_id": principal.user_id})
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self._on_expiry()

    async def stop(self) -> None:
        await _cancel(self._task)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TransportWsHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """graphql-transport-ws with the rules of this module (Strawberry already closes 4408 when
    `connection_init` is late, and 4429 on a second one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lifetime = _TokenLifetime(self.context, self._expire)

    async def handle_message(self, message: TransportMessage) -> None:
        if not _has_type(message):
            await self.handle_invalid_message("a message must be a JSON object with a string `type`")
        elif not self.connection_init_received and message["type"] != "connection_init":
            await self.websocket.close(code=CLOSE_UNAUTHORIZED, reason="Unauthorized")
        else:
            await super().handle_message(message)

    async def handle_connection_init(self, message: TransportInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self.lifetime.start()

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and self.lifetime.expired:
            await self._expire()
        elif not _is_operation(message):
            await self.handle_invalid_message("a subscribe message needs an id and a payload with a query")
        else:
            await super().handle_subscribe(message)

    async def _expire(self) -> None:
        await self.websocket.close(code=CLOSE_FORBIDDEN, reason=EXPIRED_REASON)

    async def shutdown(self) -> None:
        await self.lifetime.stop()
        await super().shutdown()


class LegacyWsHandler(BaseGraphQLWSHandler[GraphQLContext, None]):
    """The legacy graphql-ws protocol with the rules of this module, the init timeout included
    (Strawberry's legacy handler has none). After `connection_init`, non-JSON and unknown
    messages are ignored, as the protocol's reference server does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lifetime = _TokenLifetime(self.context, self._expire)
        self.connection_init_received = False
        self._init_timeout: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        self._init_timeout = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            await _cancel(self._init_timeout)
            await self.lifetime.stop()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.connection_init_received:
            log.info("graphql.ws_init_timeout", extra={"protocol": "graphql-ws"})
            with contextlib.suppress(Exception):
                await self.websocket.close(code=CLOSE_INIT_TIMEOUT, reason="Connection initialisation timeout")

    async def handle_message(self, message: OperationMessage) -> None:
        if self.connection_init_received:
            if _has_type(message):
                await super().handle_message(message)
        elif _has_type(message) and message["type"] == "connection_init":
            await self.handle_connection_init(message)
        else:
            await self.websocket.close(code=CLOSE_UNAUTHORIZED, reason="Unauthorized")

    async def handle_connection_init(self, message: LegacyInitMessage) -> None:
        if self.connection_init_received:
            # A second init would swap the socket's identity; graphql-transport-ws forbids it too.
            await self.websocket.close(code=CLOSE_TOO_MANY_INITS, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        await _cancel(self._init_timeout)
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self.lifetime.start()

    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged and self.lifetime.expired:
            await self._expire()
        elif not _is_operation(message):
            await self.websocket.close(code=CLOSE_BAD_MESSAGE, reason="a start message needs an id and a query")
        else:
            await super().handle_start(message)

    async def _expire(self) -> None:
        await self.send_message({"type": "connection_error", "payload": {"message": EXPIRED_REASON}})
        await self.websocket.close(code=CLOSE_FORBIDDEN, reason=EXPIRED_REASON)
