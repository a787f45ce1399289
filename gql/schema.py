"""The GraphQL schema, composed from its parts, with the limits every operation must respect."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.types import ExecutionContext

from gql.cost import MAX_LIST_ITEMS, QueryCostLimiter
from gql.errors import KNOWN, BadInput, graphql_error
from gql.mutations import Mutation
from gql.queries import Query
from gql.subscriptions import Subscription

log = logging.getLogger("restore.api")

# The deepest legitimate operation is jobs → edges → node → field (4); room for a fragment or two.
MAX_DEPTH = 8
# Aliases multiply work per request (e.g. 1,000 aliased `job` lookups); real clients use a few.
MAX_ALIASES = 15
# Bounds the size of the document itself (parsing and validation cost), whatever its shape.
MAX_TOKENS = 2000


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
        if error.path is None and isinstance(original, (ValueError, TypeError)):
            # Validation coercing a literal of the document failed (graphql-core lets `int()`'s
            # error out for an Int of thousands of digits): the client's mistake, not a crash.
            return GraphQLError("invalid value in the operation", error.nodes, extensions={"code": BadInput.code})
        if not isinstance(original, KNOWN):
            log.error("graphql.unexpected_error", exc_info=original)
        return graphql_error(original, like=error)


class RestorationSchema(strawberry.Schema):
    """Strawberry logs every error at ERROR with a traceback; expected ones (a 503 in an outage, a
    refused upload) are not crashes. Unexpected errors are still logged, by `DomainErrors`."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        unexpected = [
            error
            for error in errors
            if error.original_error is not None and not (isinstance(error.original_error, (*KNOWN, GraphQLError)))
        ]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def create_schema() -> strawberry.Schema:
    return RestorationSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            # Counts list sizes, which aliases and depth do not: 15 aliased `jobs(first: 100)` is 1,500 jobs.
            lambda: QueryCostLimiter(max_items=MAX_LIST_ITEMS),
            DomainErrors,
        ],
    )
