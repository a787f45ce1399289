"""The composition root: every process is put together here, and nothing imports this module.

`create_app(settings, workflow)` builds the API; its lifespan opens every long-lived client once
(database, httpx, storage, Redis) and closes them on shutdown. With a `DevEnvironment` it becomes
`restoration dev`'s app: local file storage served at signed URLs, its own JWKS and an in-process
worker (the worker process's own root is `tasks.runtime`). `main()` is the `restoration` command:
it parses the command line and hands each command to the module that runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from comfy.client import ComfyClient
from gql.auth import JwksCache, JwtVerifier
from gql.context import Services
from gql.devauth import JWKS_PATH
from gql.devenv import DevEnvironment
from gql.errors import add_error_handlers
from gql.idempotency import IdempotencyStore
from gql.live import JobEventHub
from gql.ops import router as ops_router
from gql.requestid import REQUEST_ID_HEADER, RequestIdFilter, RequestIdMiddleware
from gql.rest import router as rest_router
from gql.rest_schema import with_job_examples
from gql.router import create_graphql_router
from gql.schema import create_schema
from gql.uploads import MULTIPART_OVERHEAD, BodyLimitMiddleware
from gql.watching import current_event, user_events_since
from gql.web.router import WebConfig, add_web_page, storage_origins
from models.db import apply_migrations, close_database, open_database
from settings import ConfigError, Settings, load_settings
from storage.base import ObjectStore
from storage.errors import StorageConfigError
from storage.local import FILES_PREFIX, LoopbackObjectCors, SignedPutMiddleware, loopback_origins, object_route
from storage.urls import ImageUrls
from tasks.deadline import sweeping
from tasks.embedded_worker import EmbeddedWorker
from tasks.events import EventPublisher
from tasks.logs import LogFormat, configure_logging
from tasks.queue import JobQueue, create_huey
from tasks.runtime import reconciling, restorer_session, s3_storage, worker_identity
from tasks.scheduler import SlotBoard
from workflows.binding import Workflow, WorkflowError, load_workflow

log = logging.getLogger("restore.api")

# The API's one pub/sub connection is named, so operators (and tests) can find it in CLIENT LIST.
EVENTS_CLIENT_NAME = "restoration-api-events"
PUBLISHER_CLIENT_NAME = "restoration-api-publisher"
IDEMPOTENCY_CLIENT_NAME = "restoration-api-idempotency"
# JWKS fetches are small; a slow identity provider must not hold requests for long.
JWKS_HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
# Seconds a running job gets to finish when the dev server stops.
DEV_SHUTDOWN_GRACE = 10.0


def create_app(settings: Settings, workflow: Workflow, *, dev: DevEnvironment | None = None) -> FastAPI:
    redis_url, audience = settings.redis_url, settings.auth0_audience
    if not (redis_url and audience):
        raise ConfigError("the API needs REDIS_URL and AUTH0_AUDIENCE")
    local = dev.local_storage() if dev is not None and not settings.s3_bucket else None
    if local is None and not settings.s3_bucket:
        raise ConfigError("S3_BUCKET is required outside `restoration dev`")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await open_database(settings.database_url)
            stack.push_async_callback(close_database)
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=JWKS_HTTP_TIMEOUT))
            jwks = JwksCache(jwks_url=settings.jwks_url, http=http)
            stack.push_async_callback(jwks.aclose)  # a refresh in flight ends before its client closes
            huey = create_huey(redis_url)
            stack.callback(huey.storage.pool.disconnect)
            events_client = aioredis.Redis.from_url(
                redis_url, client_name=EVENTS_CLIENT_NAME, socket_connect_timeout=2, health_check_interval=15
            )
            stack.push_async_callback(events_client.aclose)
            hub = JobEventHub(events_client, resync=current_event, catch_up=user_events_since)
            await hub.start()
            stack.push_async_callback(hub.close)
            storage: ObjectStore = local if local is not None else await asyncio.to_thread(s3_storage, settings)
            key_pem = (
                await asyncio.to_thread(settings.cloudfront_private_key_file.read_bytes)
                if settings.cloudfront_private_key_file
                else None
            )
            queue = JobQueue(huey)
            idempotency_client = aioredis.Redis.from_url(
                redis_url, client_name=IDEMPOTENCY_CLIENT_NAME, socket_connect_timeout=2
            )
            stack.push_async_callback(idempotency_client.aclose)
            app.state.comfy_probes = [
                ComfyClient(base_url=url, http=http, client_id="api-probe") for url in settings.comfyui_urls
            ]
            app.state.slot_board = SlotBoard(
                huey.storage.conn, capacity=settings.comfyui_max_inflight, lease_seconds=settings.worker_lease_seconds
            )
            app.state.services = Services(
                storage=storage,
                urls=ImageUrls(
                    ttl_seconds=settings.signed_url_ttl_seconds,
                    cloudfront_domain=settings.cloudfront_domain,
                    cloudfront_key_id=settings.cloudfront_key_id,
                    cloudfront_private_key_pem=key_pem,
                    presigner=storage.presigned_get_url,
                ),
                queue=queue,
                verifier=JwtVerifier(jwks=jwks, audience=audience, issuer=settings.issuer),
                events=hub,
                idempotency=IdempotencyStore(idempotency_client, ttl_seconds=settings.idempotency_ttl_seconds),
                max_upload_bytes=settings.max_upload_bytes,
                max_image_pixels=settings.max_image_pixels,
                default_denoise=workflow.default_denoise,
                upload_ttl_seconds=settings.upload_ttl_seconds,
                max_pending_jobs_per_user=settings.max_pending_jobs_per_user,
            )
            if dev is not None:
                restorer = await stack.enter_async_context(
                    restorer_session(settings, workflow, storage=storage, worker_id=worker_identity(), queue=queue)
                )
                await stack.enter_async_context(reconciling(settings, restorer=restorer, queue=queue))
                worker = EmbeddedWorker(queue, restorer, concurrency=settings.worker_concurrency)
                await worker.start()
                stack.push_async_callback(worker.stop, grace=DEV_SHUTDOWN_GRACE)
            else:
                # Jobs no worker could start in time are failed even while every worker is down;
                # their change is published on a client of its own (the events client is the
                # process's one subscriber connection).
                publisher = aioredis.Redis.from_url(
                    redis_url, client_name=PUBLISHER_CLIENT_NAME, socket_connect_timeout=2
                )
                stack.push_async_callback(publisher.aclose)
                await stack.enter_async_context(
                    sweeping(
                        timeout_seconds=settings.job_timeout_seconds,
                        servers=settings.comfyui_urls,
                        interval=settings.reconcile_interval_seconds,
                        on_change=EventPublisher(publisher).publish,
                        queue=queue,
                    )
                )
            yield

    app = FastAPI(
        title="Restoration API",
        version="0.1.0",
        summary="Upload an old photo, get it restored by a ComfyUI workflow.",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},  # the token survives a reload of /docs
    )
    app.openapi = with_job_examples(app.openapi)  # type: ignore[method-assign]
    app.include_router(rest_router)
    app.include_router(
        create_graphql_router(create_schema(), allowed_origins=settings.allowed_origins),
        prefix="/graphql",
        include_in_schema=False,
    )
    if local is not None:
        app.add_route(FILES_PREFIX + "{key:path}", object_route(local), methods=["GET"], include_in_schema=False)
    if dev is not None and dev.identity is not None:
        jwks = dev.identity.jwks
        app.add_route(JWKS_PATH, lambda request: JSONResponse(jwks), methods=["GET"], include_in_schema=False)
    app.include_router(ops_router)
    dev_identity = dev.identity if dev is not None else None
    add_web_page(
        app,
        WebConfig(
            dev_sign_in=dev_identity is not None,
            auth0_domain=settings.auth0_domain,
            auth0_client_id=settings.auth0_client_id,
            auth0_audience=audience,
            default_denoise=workflow.default_denoise,
            max_upload_bytes=settings.max_upload_bytes,
            storage_origins=storage_origins(
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_bucket=settings.s3_bucket,
                cloudfront_domain=settings.cloudfront_domain,
                local_url=dev.public_url if local is not None and dev is not None else None,
            ),
        ),
        dev_token=dev_identity.token if dev_identity is not None else None,
    )
    add_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        file_limit=settings.max_upload_bytes,
        idle_timeout=settings.upload_idle_timeout_seconds,
    )
    if local is not None:
        # Outside the body limits: a direct upload's PUT is limited by its own signed length.
        app.add_middleware(SignedPutMiddleware, storage=local)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "PUT", "OPTIONS"],  # PUT: direct uploads to `restoration dev`
        allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
        expose_headers=["Location", "Retry-After", REQUEST_ID_HEADER],
        max_age=600,
    )
    if local is not None and dev is not None:
        # Outside the API's CORS: the page opened as `localhost` sends photos to the printed
        # `127.0.0.1` URLs (or back), and only the object routes need to answer it.
        app.add_middleware(LoopbackObjectCors, origins=loopback_origins(dev.public_url))
    # Outermost (added last), so every response, the body limit's 413s and CORS answers included,
    # carries the request id, and every line logged while serving it does.
    app.add_middleware(RequestIdMiddleware)
    return app


# -- command line ---------------------------------------------------------------------------------


def _configure_logging(level: str, fmt: LogFormat) -> None:
    # One handler, one format, for our loggers and every library's (uvicorn, Huey); API lines
    # carry the request id.
    configure_logging(level=level, fmt=fmt, filters=[RequestIdFilter()])
    # One line per outgoing HTTP request is noise at INFO (JWKS, ComfyUI polling, the submit client).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def _load(require_production: bool = True) -> tuple[Settings, Workflow]:
    settings = load_settings()
    if require_production:
        settings.require_production()
    workflow = load_workflow(settings.comfyui_workflow, settings.bindings_path)
    return settings, workflow


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    applied = asyncio.run(apply_migrations(settings.database_url))
    log.info("migrate.done", extra={"applied": applied})
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    from gql.serving import Listening, api_config, bind_listener, run_servers

    settings, workflow = _load()
    with bind_listener(args.host, args.port) as listener:
        config = api_config(
            create_app(settings, workflow),
            host=args.host,
            port=args.port,
            log_level=settings.log_level.lower(),
            header_timeout_seconds=settings.http_header_timeout_seconds,
            max_connections=settings.api_max_connections,
        )
        url = f"http://{args.host}:{listener.getsockname()[1]}"
        run_servers([Listening(config, listener)], on_started=lambda: log.info("api.listening", extra={"url": url}))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from tasks.worker import run_worker

    settings, workflow = _load()
    run_worker(settings, workflow, concurrency=args.concurrency)
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from gql.devserver import run_dev

    settings, workflow = _load(require_production=False)
    return run_dev(
        settings, lambda dev_settings, dev: create_app(dev_settings, workflow, dev=dev), host=args.host, port=args.port
    )


def _cmd_emulator(args: argparse.Namespace) -> int:
    from comfy.emulator.__main__ import main as emulator_main

    return emulator_main(["--host", args.host, "--port", str(args.port), "--service-time", str(args.service_time)])


def _cmd_submit(args: argparse.Namespace) -> int:
    from gql.cli_client import submit_cli

    return submit_cli(args)


PORT_HELP = "port to listen on (default: $PORT, else 8000)"


def build_parser() -> argparse.ArgumentParser:
    # `PORT=8001 restoration dev` (what `make dev PORT=8001` runs) as well as `--port 8001`; argparse
    # converts and checks a string default as it does the flag's value.
    default_port = os.environ.get("PORT", "8000")
    parser = argparse.ArgumentParser(prog="restoration", description="Photo-restoration backend.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the database migrations").set_defaults(run=_cmd_migrate)
    api = commands.add_parser("api", help="serve the API (GraphQL, REST, health, metrics)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=default_port, help=PORT_HELP)
    api.set_defaults(run=_cmd_api)
    worker = commands.add_parser("worker", help="run the Huey consumer that executes restoration jobs")
    worker.add_argument(
        "--concurrency", type=int, default=None, help="jobs at once (default: every slot of every server, plus one)"
    )
    worker.set_defaults(run=_cmd_worker)
    dev = commands.add_parser("dev", help="the whole product in one process, no outside services")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=default_port, help=PORT_HELP)
    dev.set_defaults(run=_cmd_dev)
    emulator = commands.add_parser("emulator", help="the bundled ComfyUI emulator alone (CPU stand-ins, not ComfyUI)")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8188)
    emulator.add_argument("--service-time", type=float, default=2.0, help="seconds the sampler stand-in takes")
    emulator.set_defaults(run=_cmd_emulator)
    submit = commands.add_parser("submit", help="upload a photo, follow the job live, download the result")
    submit.add_argument("photo", type=Path)
    submit.add_argument("--denoise", type=float, default=None)
    submit.add_argument("--watch", action="store_true", help="follow the job with a progress bar until it ends")
    submit.add_argument("--out", type=Path, default=None, help="where to save the result (implies --watch)")
    submit.add_argument(
        "--idempotency-key",
        default=None,
        help="the submit's Idempotency-Key (default: derived from the file and the denoise, so running the"
        " same command again returns the first run's job)",
    )
    submit.add_argument("--url", default=None, help="API base URL (default: ./.data/dev-url)")
    submit.add_argument("--token", default=None, help="bearer token (default: ./.data/dev-token)")
    submit.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="Ctrl-C while following the job cancels it on the server (exit status 130)",
    )
    # The client reads only what it uses (these flags, ./.data/, LOG_LEVEL): server settings in the
    # environment, valid or not, are none of its business.
    submit.set_defaults(run=_cmd_submit, server_settings=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "server_settings", True):
            settings = load_settings()
            _configure_logging(settings.log_level, settings.log_format)
        else:
            _configure_logging(os.environ.get("LOG_LEVEL", "INFO"), "text")
        result: Any = args.run(args)
    except (ConfigError, WorkflowError, StorageConfigError) as exc:
        print(f"restoration: {exc}", file=sys.stderr)  # noqa: T201 - the one-line operator error
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
