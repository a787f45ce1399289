"""The GraphQL schema, composed from its parts, with the limits every operation must respect."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from gql.mutations import Mutation
from gql.queries import Query
from gql.router import DomainErrors
from gql.subscriptions import Subscription

# The deepest legitimate operation is jobs → edges → node → field (4); room for a fragment or two.
MAX_DEPTH = 8
# Aliases multiply work per request (e.g. 1,000 aliased `job` lookups); real clients use a few.
MAX_ALIASES = 15
# Bounds the size of the document itself (parsing and validation cost), whatever its shape.
MAX_TOKENS = 2000


def create_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            DomainErrors,
        ],
    )
