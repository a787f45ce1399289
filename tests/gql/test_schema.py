"""The GraphQL schema is a committed contract: gql/schema.graphql must match the live schema."""

from __future__ import annotations

from pathlib import Path

from gql.schema import create_schema

COMMITTED = Path(__file__).resolve().parents[2] / "gql" / "schema.graphql"


def test_committed_schema_matches_the_live_schema() -> None:
    live = create_schema().as_str() + "\n"
    assert COMMITTED.read_text() == live, (
        "gql/schema.graphql is stale; regenerate it with "
        '`python -c "from gql.schema import create_schema; print(create_schema().as_str())" > gql/schema.graphql`'
    )


def test_schema_has_the_contracts_operations() -> None:
    schema = create_schema().as_str()
    for line in (
        "job(id: ID!): RestorationJob",
        "restoreImage(file: Upload!, denoise: Float = null, idempotencyKey: String = null): RestorationJob!",
        "restoreUpload(uploadId: ID!, denoise: Float = null, idempotencyKey: String = null): RestorationJob!",
        "jobUpdated(id: ID!): RestorationJob!",
        "cancelJob(id: ID!): RestorationJob!",
        "jobs(first: Int = 20, after: String = null, status: JobStatus = null): JobConnection!",
    ):
        assert line in schema
