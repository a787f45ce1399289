"""`restoration worker`: the Huey consumer that executes restoration jobs."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from settings import ConfigError, Settings
from tasks.queue import create_huey
from tasks.runtime import WorkerRuntime
from workflows.binding import Workflow

log = logging.getLogger("restore.worker")

# How long SIGTERM waits for running jobs before the worker exits anyway; what is left
# unfinished is settled later from ComfyUI's own record.
SHUTDOWN_GRACE_SECONDS = 30.0


def run_worker(settings: Settings, workflow: Workflow, *, concurrency: int | None = None) -> None:
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is required")
    huey = create_huey(settings.redis_url)
    runtime = WorkerRuntime(settings, workflow, huey)
    runtime.start()
    if settings.worker_metrics_port:
        try:
            start_http_server(settings.worker_metrics_port)
        except OSError as exc:
            runtime.stop()
            raise ConfigError(
                f"WORKER_METRICS_PORT {settings.worker_metrics_port} is not available ({exc.strerror}); "
                "give each worker its own port, or 0 to serve no metrics"
            ) from None
        log.info("worker.metrics", extra={"port": settings.worker_metrics_port})
    try:
        consumer = huey.create_consumer(
            workers=concurrency or settings.worker_concurrency,
            worker_type="thread",
            periodic=False,
            graceful_signal="TERM",
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
            initial_delay=0.05,
            max_delay=1.0,
        )
        consumer.run()
    finally:
        runtime.stop()
        log.info("worker.stopped")
