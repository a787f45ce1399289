"""Shared fixtures: real PostgreSQL, Redis, an S3-compatible server, a JWKS and the ComfyUI double."""

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.jwks",
    "tests.fixtures.comfy",
    "tests.fixtures.services",
    "tests.fixtures.worker",
]
