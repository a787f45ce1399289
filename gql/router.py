"""The GraphQL endpoint: Strawberry's FastAPI router, with websocket authentication and limits.

The websocket rules (init timeout, message size, token lifetime) live in `gql.sockets`; this
module wires them in and keeps HTTP requests to what HTTP can serve (no subscriptions: they
need a websocket).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gql.auth import AuthError, AuthUnavailable, bearer_token
from gql.context import GraphQLContext, graphql_context
from gql.sockets import BoundedWebSocketAdapter, LegacyWsHandler, TransportWsHandler

log = logging.getLogger("restore.api")

# A client sends `connection_init` right after the handshake; a socket silent this long is an
# idle (or hostile) connection holding a file descriptor, on either protocol.
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)
# The web page watches one job per socket; a few dozen covers any real client, and each one holds
# a pub/sub watcher and a task.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 32
# Over HTTP only queries and mutations run: no HTTP subscription transport (SSE, multipart) is on.
HTTP_OPERATION_TYPES = frozenset({OperationType.QUERY, OperationType.MUTATION})


class RestorationGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    graphql_transport_ws_handler_class = TransportWsHandler
    graphql_ws_handler_class = LegacyWsHandler
    websocket_adapter_class = BoundedWebSocketAdapter

    async def on_ws_connect(self, context: GraphQLContext) -> dict[str, object] | None:
        """Authenticate a websocket from its `connection_init` payload (`Authorization`, any key
        case) or, failing that, the upgrade request's header. A bad or missing token rejects the
        connection: close 4403 (graphql-transport-ws) or `connection_error` (graphql-ws)."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = next(
            (value for key, value in params.items() if key.lower() == "authorization" and isinstance(value, str)),
            None,
        )
        if header is None and context.request is not None:
            header = context.request.headers.get("authorization")
        try:
            context.principal = await context.services.verifier.verify(bearer_token(header))
        except (AuthError, AuthUnavailable) as exc:
            log.info("graphql.ws_rejected", extra={"reason": str(exc)})
            raise ConnectionRejectionError({"message": f"not authenticated: {exc}"}) from exc
        return None

    def decode_json(self, data: str | bytes) -> object:
        """JSON nested deeper than the interpreter's recursion limit is malformed (HTTP 400,
        websocket 4400), not a crash."""
        try:
            return json.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: GraphQLContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """As Strawberry's, but a subscription over HTTP is a 400: Strawberry would run it as a
        query and fail inside the resolver (an internal error)."""
        allowed = set(HTTP_OPERATION_TYPES & OperationType.from_http(request_adapter.method))
        if not self.allow_queries_via_get and request_adapter.method == "GET":
            allowed.discard(OperationType.QUERY)
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            reason = exc.as_http_error_reason(request_adapter.method)
            if exc.operation_type is OperationType.SUBSCRIPTION:
                reason = "subscriptions need a websocket (graphql-transport-ws or graphql-ws), not HTTP"
            raise HTTPException(400, reason) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc


def create_graphql_router(
    schema: Any,
    *,
    allowed_origins: list[str],
    connection_init_timeout: timedelta = CONNECTION_INIT_TIMEOUT,
) -> GraphQLRouter[GraphQLContext, None]:
    return RestorationGraphQLRouter(
        schema,
        context_getter=graphql_context,  # type: ignore[arg-type]  # a FastAPI yield-dependency
        multipart_uploads_enabled=True,
        graphql_ide="graphiql",
        allowed_origins=allowed_origins,
        connection_init_wait_timeout=connection_init_timeout,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
    )
