"""Shared fixtures: real PostgreSQL, Redis, an S3-compatible server, a JWKS and the ComfyUI double."""

import pytest

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.jwks",
    "tests.fixtures.comfy",
    "tests.fixtures.services",
    "tests.fixtures.worker",
]

SYSTEM_TESTS = "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/system (real processes, fault injection, fuzzing) is `slow`, so
    `pytest -m "not slow"` is the quick loop while editing."""
    for item in items:
        if SYSTEM_TESTS in item.path.relative_to(item.config.rootpath).parts[:2]:
            item.add_marker(pytest.mark.slow)
