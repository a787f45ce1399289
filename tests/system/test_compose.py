"""docker-compose.yml describes the real stack and validates with Compose (when it is installed);
its shape is checked here without Docker, from the YAML itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "AUTH0_DOMAIN": "tenant.example.com", "AUTH0_AUDIENCE": "https://api.example.com"}
EMULATORS = ("emulator-1", "emulator-2")
APP_SERVICES = ("migrate", "api", "worker", *EMULATORS)
# S3-compatible servers whose images are still published and maintained (MinIO's are not).
MAINTAINED_S3_IMAGES = ("chrislusf/seaweedfs", "rustfs/rustfs", "zenko/cloudserver", "dxflrs/garage")
S3_PORT = "9000"


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def services() -> dict[str, Any]:
    # PyYAML resolves the `<<: *app` merge keys as Compose does.
    stack: dict[str, Any] = compose_file()["services"]
    return stack


def default_of(value: str) -> str:
    """`${NAME:-default}` with its default, as Compose reads it when NAME is unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(service["healthcheck"].get("test", []))


def test_compose_file_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*command, "--profile", "emulator", "config", "-q"], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_stack_has_every_service_and_workers_scale() -> None:
    stack = services()
    assert {"postgres", "redis", "s3", "create-bucket", *APP_SERVICES} <= set(stack)
    assert "container_name" not in stack["worker"]  # `--scale worker=N` needs unnamed containers
    assert "ports" not in stack["worker"]
    assert stack["worker"]["deploy"]["replicas"] >= 2
    for name in EMULATORS:
        assert stack[name]["profiles"] == ["emulator"], name


def test_two_api_replicas_behind_one_proxy_port_that_carries_websockets() -> None:
    stack = services()
    api, proxy = stack["api"], stack["proxy"]
    assert api["deploy"]["replicas"] == 2
    assert "ports" not in api  # replicas: only the proxy is published
    assert "container_name" not in api
    assert proxy["ports"] == ["8000:8000"]
    assert proxy["image"].split(":")[0] in ("nginx", "caddy")
    assert proxy["depends_on"]["api"] == {"condition": "service_healthy"}
    assert "127.0.0.1:8000/healthz" in healthcheck_text(proxy)
    [mount] = proxy["configs"]
    config = compose_file()["configs"][mount["source"]]["content"]
    assert mount["target"] == "/etc/nginx/conf.d/default.conf"
    # Round robin over every replica Docker's DNS returns, re-resolved as replicas come and go.
    assert "server api:8000 resolve;" in config
    assert "resolver 127.0.0.11" in config
    # Websocket upgrades pass through (`$$` is Compose's escape for a literal `$`).
    assert "proxy_set_header Upgrade $$http_upgrade;" in config
    assert "proxy_set_header Connection $$connection_upgrade;" in config
    assert "proxy_http_version 1.1;" in config
    assert re.search(r"proxy_read_timeout \d+h;", config)
    assert "$" not in config.replace("$$", "")  # nothing left for Compose to interpolate


def default(setting: str) -> Any:
    """The API's default for a setting (what the stack runs with: it does not override it)."""
    return Settings.model_fields[setting].default


def test_the_proxy_drops_stalled_clients_and_bodies_over_the_upload_limit() -> None:
    [mount] = services()["proxy"]["configs"]
    config = compose_file()["configs"][mount["source"]]["content"]
    timeouts = ("client_header_timeout", "client_body_timeout", "keepalive_timeout", "send_timeout")
    pattern = rf"^\s*({'|'.join(timeouts)}) (\d+)s;"
    seconds = {name: int(value) for name, value in re.findall(pattern, config, re.M)}
    assert seconds.keys() == set(timeouts)
    assert seconds["client_header_timeout"] <= default("http_header_timeout_seconds")
    assert seconds["client_body_timeout"] <= default("upload_idle_timeout_seconds")
    assert seconds["keepalive_timeout"] <= 10
    [megabytes] = re.findall(r"client_max_body_size (\d+)m;", config)
    # The largest upload the API takes, plus room for the multipart envelope (at most 1 MiB of it).
    assert 0 < int(megabytes) * 1024 * 1024 - default("max_upload_bytes") <= 1024 * 1024


def test_the_emulator_profile_is_two_comfyui_hosts_listed_in_comfyui_url() -> None:
    stack = services()
    urls = default_of(stack["worker"]["environment"]["COMFYUI_URL"]).split(",")
    assert urls == [f"http://{name}:8188" for name in EMULATORS]
    for name in EMULATORS:
        assert stack[name]["command"][:2] == ["restoration", "emulator"], name
        assert stack[name]["command"][-2:] == ["--port", "8188"], name
        assert "ports" not in stack[name], name
    for name in ("api", "worker"):
        assert stack[name]["environment"]["COMFYUI_URL"] == stack["worker"]["environment"]["COMFYUI_URL"], name


def test_no_image_is_minio_and_s3_is_a_maintained_server() -> None:
    stack = services()
    assert not [name for name, service in stack.items() if "minio" in str(service.get("image", ""))]
    assert stack["s3"]["image"].split(":")[0] in MAINTAINED_S3_IMAGES


def test_the_app_image_is_built_from_the_docker_folder_with_the_lock_file() -> None:
    stack = services()
    for name in APP_SERVICES:
        assert stack[name]["build"] == {"context": ".", "dockerfile": ".ci/Dockerfile"}, name
    dockerfile = (ROOT / ".ci" / "Dockerfile").read_text()
    assert "pip install -c .ci/requirements.lock ." in dockerfile
    # Nothing for the worker, migrate or emulator containers to inherit from the image.
    assert "HEALTHCHECK" not in dockerfile
    assert not (ROOT / "Dockerfile").exists()


def test_each_app_service_has_its_own_healthcheck_and_only_the_api_checks_the_api() -> None:
    stack = services()
    assert stack["migrate"]["healthcheck"] == {"disable": True}
    assert "127.0.0.1:8000/healthz" in healthcheck_text(stack["api"])
    assert "127.0.0.1:9100/" in healthcheck_text(stack["worker"])  # WORKER_METRICS_PORT
    assert stack["worker"]["environment"]["WORKER_METRICS_PORT"] == "9100"
    for name in EMULATORS:
        assert "127.0.0.1:8188/prompt" in healthcheck_text(stack[name]), name
    for name in ("worker", *EMULATORS):
        assert ":8000" not in healthcheck_text(stack[name]), name


def test_presigned_urls_name_a_host_the_browser_and_the_containers_share() -> None:
    stack = services()
    endpoint = default_of(stack["api"]["environment"]["S3_ENDPOINT_URL"])
    host, port = endpoint.removeprefix("http://").split(":")
    # Browsers resolve *.localhost to this machine, where port 9000 is published...
    assert host.endswith(".localhost")
    assert port == S3_PORT
    assert f"{S3_PORT}:{S3_PORT}" in stack["s3"]["ports"]
    # ...and inside the network the same name is the S3 service, listening on the same port.
    assert host in [default_of(alias) for alias in stack["s3"]["networks"]["default"]["aliases"]]
    assert f"-s3.port={S3_PORT}" in stack["s3"]["command"]
    for name in APP_SERVICES:
        assert stack[name]["environment"]["S3_ENDPOINT_URL"] == stack["api"]["environment"]["S3_ENDPOINT_URL"], name


def test_the_bucket_is_created_before_the_api_and_workers_start() -> None:
    stack = services()
    bucket = stack["api"]["environment"]["S3_BUCKET"]
    assert f"create-bucket --bucket {bucket}" in " ".join(stack["create-bucket"]["command"])
    for name in ("api", "worker"):
        assert stack[name]["depends_on"]["create-bucket"] == {"condition": "service_completed_successfully"}


def test_the_lock_pins_every_dependency_exactly_and_ci_installs_with_it() -> None:
    lock = [line for line in (ROOT / ".ci" / "requirements.lock").read_text().splitlines() if not line.startswith("#")]
    pins = dict(line.split("==") for line in lock)
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-!]+", line) for line in lock), lock
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.split(r"[\[<>=~! ]", requirement, maxsplit=1)[0] for requirement in declared}
    normalized = {re.sub(r"[-_.]+", "-", name).lower() for name in pins}
    assert {re.sub(r"[-_.]+", "-", name).lower() for name in names} <= normalized
    assert "restoration-api" not in normalized  # the project itself is what is being installed
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := .ci/requirements.lock" in makefile
    assert 'pip install -q -c $(LOCK) -e ".[dev]"' in makefile
