"""Composition root of the API process, and the `restoration` command line.

`create_app(settings)` builds the FastAPI app; its lifespan opens every long-lived client once
(database, httpx, S3, Redis) and closes them on shutdown. `main()` is the console script.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from gql.auth import JwksCache, JwtVerifier
from gql.context import Services
from gql.errors import KNOWN, classify
from gql.jobs import current_event
from gql.rest import router as rest_router
from gql.router import create_graphql_router
from gql.schema import create_schema
from gql.uploads import MULTIPART_OVERHEAD, BodyLimitMiddleware
from models.db import apply_migrations, close_database, open_database
from settings import ConfigError, Settings, load_settings
from storage.errors import StorageConfigError, StorageError
from storage.s3 import S3Storage, make_s3_client
from storage.urls import ImageUrls
from tasks.events import JobEventHub
from tasks.queue import JobQueue, create_huey
from workflows.binding import Workflow, WorkflowError, load_workflow

log = logging.getLogger("restore.api")

# The API's one pub/sub connection is named, so operators (and tests) can find it in CLIENT LIST.
EVENTS_CLIENT_NAME = "restoration-api-events"
# JWKS fetches are small; a slow identity provider must not hold requests for long.
JWKS_HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


def create_app(settings: Settings, workflow: Workflow) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_url, bucket, audience = settings.redis_url, settings.s3_bucket, settings.auth0_audience
        if not (redis_url and bucket and audience):
            raise ConfigError("the API needs REDIS_URL, S3_BUCKET and AUTH0_AUDIENCE")
        await open_database(settings.database_url)
        http = httpx.AsyncClient(timeout=JWKS_HTTP_TIMEOUT)
        huey = create_huey(redis_url)
        events_client = aioredis.Redis.from_url(
            redis_url, client_name=EVENTS_CLIENT_NAME, socket_connect_timeout=2, health_check_interval=15
        )
        hub = JobEventHub(events_client, resync=current_event)
        await hub.start()
        try:
            client = await asyncio.to_thread(
                make_s3_client,
                region=settings.aws_region,
                endpoint_url=settings.s3_endpoint_url,
                access_key_id=settings.aws_access_key_id,
                secret_access_key=(
                    settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None
                ),
            )
            storage = S3Storage(client=client, bucket=bucket)
            key_pem = (
                await asyncio.to_thread(settings.cloudfront_private_key_file.read_bytes)
                if settings.cloudfront_private_key_file
                else None
            )
            urls = ImageUrls(
                ttl_seconds=settings.signed_url_ttl_seconds,
                cloudfront_domain=settings.cloudfront_domain,
                cloudfront_key_id=settings.cloudfront_key_id,
                cloudfront_private_key_pem=key_pem,
                presigner=storage.presigned_get_url,
            )
            app.state.services = Services(
                storage=storage,
                urls=urls,
                queue=JobQueue(huey),
                verifier=JwtVerifier(
                    jwks=JwksCache(jwks_url=settings.jwks_url, http=http),
                    audience=audience,
                    issuer=settings.issuer,
                ),
                events=hub,
                max_upload_bytes=settings.max_upload_bytes,
                max_image_pixels=settings.max_image_pixels,
                default_denoise=workflow.default_denoise,
            )
            app.state.queue = app.state.services.queue
            yield
        finally:
            await hub.close()
            await events_client.aclose()
            await http.aclose()
            huey.storage.pool.disconnect()
            await close_database()

    app = FastAPI(
        title="Restoration API",
        version="0.1.0",
        summary="Upload an old photo, get it restored by a ComfyUI workflow.",
        lifespan=lifespan,
    )
    app.include_router(rest_router)
    app.include_router(
        create_graphql_router(create_schema(), allowed_origins=settings.allowed_origins),
        prefix="/graphql",
        include_in_schema=False,
    )
    _add_operations(app)
    _add_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        file_limit=settings.max_upload_bytes,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Location", "Retry-After"],
        max_age=600,
    )
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        problem = classify(exc)
        if problem.status >= 500 and problem.status != 503:
            log.error("api.unexpected_error path=%s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": problem.message}, status_code=problem.status, headers=problem.headers)

    for exc_type in KNOWN:
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(Exception, handle)


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        checks: dict[str, str] = {}
        checks["redis"] = "ok" if await services.queue.ping() else "unavailable"
        try:
            await services.storage.ping()
            checks["storage"] = "ok"
        except StorageError:
            checks["storage"] = "unavailable"
        checks["database"] = "ok" if await _database_ok() else "unavailable"
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "dependencies": checks}, status_code=200 if ready else 503
        )


async def _database_ok() -> bool:
    from tortoise import connections

    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:  # any failure at all means "not ready"
        return False
    return True


# -- command line ---------------------------------------------------------------------------------


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _load(require_production: bool = True) -> tuple[Settings, Workflow]:
    settings = load_settings()
    if require_production:
        settings.require_production()
    workflow = load_workflow(settings.comfyui_workflow, settings.bindings_path)
    return settings, workflow


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    applied = asyncio.run(apply_migrations(settings.database_url))
    log.info("migrate.done applied=%s", ",".join(applied) or "none (schema is current)")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings, workflow = _load()
    app = create_app(settings, workflow)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from tasks.worker import run_worker

    settings, workflow = _load()
    run_worker(settings, workflow, concurrency=args.concurrency)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="restoration", description="Photo-restoration backend.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations").set_defaults(run=_cmd_migrate)
    api = commands.add_parser("api", help="serve the API (GraphQL, REST, health, metrics)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=_cmd_api)
    worker = commands.add_parser("worker", help="run the Huey consumer that executes restoration jobs")
    worker.add_argument("--concurrency", type=int, default=None, help="worker threads (default COMFYUI_MAX_INFLIGHT)")
    worker.set_defaults(run=_cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        _configure_logging(settings.log_level)
        result: Any = args.run(args)
    except (ConfigError, WorkflowError, StorageConfigError) as exc:
        print(f"restoration: {exc}", file=sys.stderr)  # noqa: T201 - the one-line operator error
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
