"""The GraphQL schema, composed from its parts."""

from __future__ import annotations

import strawberry

from gql.mutations import Mutation
from gql.queries import Query
from gql.router import DomainErrors
from gql.subscriptions import Subscription


def create_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=[DomainErrors])
