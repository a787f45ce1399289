"""docker-compose.yml describes the real stack and validates with Compose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "AUTH0_DOMAIN": "tenant.example.com", "AUTH0_AUDIENCE": "https://api.example.com"}


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_compose_file_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*command, "--profile", "emulator", "config", "-q"], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_stack_has_every_service_and_workers_scale() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "minio", "create-bucket", "migrate", "api", "worker", "emulator"} <= set(services)
    assert "container_name" not in services["worker"]  # `--scale worker=N` needs unnamed containers
    assert "ports" not in services["worker"]
    assert services["emulator"]["profiles"] == ["emulator"]
