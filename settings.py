"""The one settings object: every knob of every process, read from the environment and `.env`.

Only the composition roots (`app.py`, `tasks/runtime.py`) read it; the packages below take plain
constructor arguments. Bad or missing configuration raises `ConfigError` with a one-line message,
which the CLI prints before exiting non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_WORKFLOW = Path(__file__).resolve().parent / "workflows" / "restore.json"


class ConfigError(Exception):
    """Configuration that cannot work; the message is one line meant for an operator."""


PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite://.data/restoration.sqlite3"
    redis_url: str | None = None
    comfyui_url: str = "http://127.0.0.1:8188"
    comfyui_workflow: Path = BUNDLED_WORKFLOW
    # Prompts of ours one ComfyUI server holds at once, counted across every worker (one running, one
    # waiting, so the GPU never waits for us): the rest wait in our queue, where they are visible.
    comfyui_max_inflight: PositiveInt = 2
    # A worker renews its claim on a running job this often (a third of it); a job whose lease ran
    # out lost its worker and is settled by the reconciler, which runs every RECONCILE_INTERVAL.
    worker_lease_seconds: PositiveInt = 60
    reconcile_interval_seconds: Annotated[float, Field(gt=0)] = 10.0
    # A pending job older than this that is not in the queue lost its message and is queued again.
    requeue_after_seconds: Annotated[float, Field(gt=0)] = 30.0
    # Each worker serves its Prometheus metrics on this port (0 = not at all).
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9100
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    cloudfront_domain: str | None = None
    cloudfront_key_id: str | None = None
    cloudfront_private_key_file: Path | None = None
    auth0_domain: str | None = None
    auth0_audience: str | None = None
    auth0_issuer: str | None = None
    auth0_jwks_url: str | None = None
    # The web page's Auth0 application (Single Page Application, PKCE); unset = the page cannot
    # sign in outside `restoration dev`, and says so.
    auth0_client_id: str | None = None
    max_upload_bytes: PositiveInt = 52_428_800
    # An upload that sends nothing for this long is dropped (408) and its spooled file removed.
    upload_idle_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    max_image_pixels: PositiveInt = 150_000_000
    # A connection whose request head is not complete this long after it opened (or went idle) is
    # closed: half-sent heads (a slowloris flood) must not hold sockets (gql/serving.py).
    http_header_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 10.0
    # Concurrent connections one API process holds; beyond it a request gets 503.
    api_max_connections: PositiveInt = 1000
    job_timeout_seconds: PositiveInt = 300
    signed_url_ttl_seconds: PositiveInt = 3600
    # How long an `Idempotency-Key` is remembered (with the job it made).
    idempotency_ttl_seconds: PositiveInt = 86400
    # A direct-upload ticket (its signed PUT URL and its staged object) lives this long.
    upload_ttl_seconds: PositiveInt = 3600
    # A user with this many pending jobs gets 429 on the next submit; unset = no per-user limit
    # (what the contract asks for by default).
    max_pending_jobs_per_user: PositiveInt | None = None
    cors_origins: str = ""
    log_level: str = "INFO"
    # `text` for a terminal, `json` (one object per line) for a log pipeline; see tasks/logs.py.
    log_format: Literal["text", "json"] = "text"

    @field_validator("s3_endpoint_url", "auth0_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("comfyui_url")
    @classmethod
    def _comfyui_urls(cls, value: str) -> str:
        urls = [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
        if not urls:
            raise ValueError("needs at least one ComfyUI URL")
        if bad := [url for url in urls if not url.startswith(("http://", "https://"))]:
            raise ValueError(f"must be http:// or https:// URLs, comma-separated (not {bad[0]!r})")
        if len(set(urls)) != len(urls):
            raise ValueError("lists a ComfyUI server twice")
        return ",".join(urls)

    @field_validator("max_pending_jobs_per_user", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("postgres://", "sqlite://", "psycopg://", "asyncpg://")):
            raise ValueError("must be a postgres:// or sqlite:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value or None

    @model_validator(mode="after")
    def _cloudfront_complete(self) -> Settings:
        if (self.cloudfront_key_id is None) != (self.cloudfront_private_key_file is None):
            raise ValueError("CLOUDFRONT_KEY_ID and CLOUDFRONT_PRIVATE_KEY_FILE must be set together")
        if self.cloudfront_key_id and not self.cloudfront_domain:
            raise ValueError("CLOUDFRONT_KEY_ID needs CLOUDFRONT_DOMAIN")
        return self

    @property
    def comfyui_urls(self) -> list[str]:
        """The ComfyUI servers, in the order given (several GPU hosts: a comma-separated list)."""
        return self.comfyui_url.split(",")

    @property
    def worker_concurrency(self) -> int:
        """Jobs one worker handles at once by default: every slot of every server, plus one whose
        result is being stored while the next prompt already runs."""
        return len(self.comfyui_urls) * self.comfyui_max_inflight + 1

    @property
    def issuer(self) -> str:
        return self.auth0_issuer or f"https://{self.auth0_domain}/"

    @property
    def jwks_url(self) -> str:
        return self.auth0_jwks_url or f"https://{self.auth0_domain}/.well-known/jwks.json"

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def bindings_path(self) -> Path:
        return self.comfyui_workflow.with_name(self.comfyui_workflow.stem + ".bindings.json")

    def require(self, *names: str) -> None:
        """Refuse to start without the named settings (environment variable names)."""
        missing = [name for name in names if getattr(self, name.lower()) in (None, "")]
        if missing:
            raise ConfigError(f"missing required setting(s): {', '.join(missing)}")

    def require_production(self) -> None:
        """What `restoration api` and `restoration worker` cannot run without."""
        self.require("REDIS_URL", "S3_BUCKET", "AUTH0_DOMAIN", "AUTH0_AUDIENCE")
        if not self.database_url.startswith(("postgres://", "psycopg://", "asyncpg://")):
            raise ConfigError("DATABASE_URL must be a postgres:// URL outside `restoration dev`")


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line per problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
