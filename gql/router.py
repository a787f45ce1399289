"""The GraphQL endpoint: authentication, multipart validation and error codes around Strawberry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError
from starlette.requests import HTTPConnection, Request
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import Info as StrawberryInfo

from gql.auth import AuthError, AuthUnavailable, Principal, bearer_token
from gql.context import Services, authenticate, services_of
from gql.errors import KNOWN, graphql_error
from gql.uploads import is_multipart, read_form, validate_graphql_multipart

log = logging.getLogger("restore.api")


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
    `connection_init` payload instead. Multipart bodies are parsed and checked against the
    multipart request spec here (HTTP 400 when malformed); Strawberry reuses the parsed form.
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


class DomainErrors(MaskErrors):
    """Give known errors their contract code and mask everything unexpected."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True, error_message="internal server error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._map(error) for error in errors]

    def _map(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is None or isinstance(original, GraphQLError):
            return error  # parse/validation errors: safe and useful as they are
        if not isinstance(original, KNOWN):
            log.error("graphql.unexpected_error", exc_info=original)
        return graphql_error(original, like=error)


class RestorationGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
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
            log.info("graphql.ws_rejected reason=%s", exc)
            raise ConnectionRejectionError({"message": f"not authenticated: {exc}"}) from exc
        return None


def create_graphql_router(schema: Any, *, allowed_origins: list[str]) -> GraphQLRouter[GraphQLContext, None]:
    return RestorationGraphQLRouter(
        schema,
        context_getter=graphql_context,  # type: ignore[arg-type]  # a FastAPI yield-dependency
        multipart_uploads_enabled=True,
        graphql_ide="graphiql",
        allowed_origins=allowed_origins,
    )
