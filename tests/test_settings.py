"""Settings: defaults of the contract, and one-line errors for configuration that cannot work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from settings import ConfigError, Settings, load_settings


def test_defaults_follow_the_contract() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.max_upload_bytes == 52_428_800
    assert settings.max_image_pixels == 150_000_000
    assert settings.job_timeout_seconds == 300
    assert settings.signed_url_ttl_seconds == 3600
    assert settings.comfyui_url == "http://127.0.0.1:8188"


def test_issuer_and_jwks_url_derive_from_the_domain() -> None:
    settings = Settings(auth0_domain="tenant.eu.auth0.com", _env_file=None)  # type: ignore[call-arg]
    assert settings.issuer == "https://tenant.eu.auth0.com/"
    assert settings.jwks_url == "https://tenant.eu.auth0.com/.well-known/jwks.json"


def test_invalid_value_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(job_timeout_seconds=0)
    assert "JOB_TIMEOUT_SECONDS" in str(error.value)
    assert "\n" not in str(error.value)


def test_production_processes_require_their_services() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="REDIS_URL"):
        settings.require_production()


def test_cloudfront_key_without_domain_is_refused() -> None:
    with pytest.raises(ConfigError, match="CLOUDFRONT"):
        load_settings(cloudfront_key_id="K1", cloudfront_private_key_file="/tmp/key.pem")


@pytest.mark.parametrize("command", ["api", "worker"])
def test_cli_reports_bad_configuration_in_one_line_and_exits_non_zero(command: str, tmp_path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "restoration"), command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "JOB_TIMEOUT_SECONDS": "-5"},
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "JOB_TIMEOUT_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr
