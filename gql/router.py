"""The GraphQL endpoint: Strawberry's FastAPI router, with websocket authentication."""

from __future__ import annotations

import logging
from typing import Any

from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter

from gql.auth import AuthError, AuthUnavailable, bearer_token
from gql.context import GraphQLContext, graphql_context

log = logging.getLogger("restore.api")


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
            log.info("graphql.ws_rejected", extra={"reason": str(exc)})
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
