"""The worker's composition root and its one sync→async bridge.

Huey runs tasks in plain threads. The worker process owns ONE event loop in a background thread,
where every long-lived client lives: the database pool, the httpx client, one websocket per
ComfyUI server, the Redis publisher and the storage client. Each Huey thread hands its job to that
loop and waits. `restorer_session` is also what `restoration dev` runs its in-process worker on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import redis
import redis.asyncio as aioredis

from comfy.servers import ComfyServers
from models import repository
from models.db import close_database, open_database
from models.repository import DatabaseUnavailable
from settings import ConfigError, Settings
from storage.base import ObjectStore
from storage.s3 import S3Storage, make_s3_client
from tasks import metrics
from tasks.deadline import sweeping
from tasks.estimates import observing, workflow_key
from tasks.events import EventPublisher
from tasks.queue import FairHuey, JobQueue
from tasks.reconcile import Reconciler
from tasks.restore import Restorer
from tasks.scheduler import SlotBoard, SlotGate
from tasks.upload_sweep import sweeping_uploads
from workflows.binding import Workflow

log = logging.getLogger("restore.worker")

T = TypeVar("T")

# Uploads of large PNGs and /view downloads can take a while; connecting must not.
COMFY_HTTP_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def worker_identity() -> str:
    """Unique per process: it is ComfyUI's clientId, and two sockets with one id steal each other's events."""
    return f"restoration-{socket.gethostname()}-{os.getpid()}"


def s3_storage(settings: Settings) -> S3Storage:
    """The S3 store the settings describe (blocking: call it in a thread)."""
    if not settings.s3_bucket:
        raise ConfigError("S3_BUCKET is required")
    secret = settings.aws_secret_access_key
    client = make_s3_client(
        region=settings.aws_region,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
    )
    return S3Storage(client=client, bucket=settings.s3_bucket)


@contextlib.asynccontextmanager
async def restorer_session(
    settings: Settings, workflow: Workflow, *, storage: ObjectStore, worker_id: str, queue: JobQueue
) -> AsyncIterator[Restorer]:
    """A ready Restorer with its clients (one ComfyUI websocket per server, the Redis publisher),
    and this process's slot gate on `queue`, so its dequeues wait for a free slot; closes all after."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is required")
    async with httpx.AsyncClient(timeout=COMFY_HTTP_TIMEOUT) as http:
        servers = ComfyServers(settings.comfyui_urls, http=http, worker_id=worker_id)
        board = SlotBoard(
            queue.huey.storage.conn, capacity=settings.comfyui_max_inflight, lease_seconds=settings.worker_lease_seconds
        )
        gate = SlotGate(board, queue.fair, reachable=servers.reachable, owner=worker_id)
        publisher_client = aioredis.Redis.from_url(
            settings.redis_url, client_name="restoration-worker-events", socket_connect_timeout=2
        )
        await servers.start()
        _export_server_metrics(servers, board)
        queue.huey.gate = gate
        try:
            yield Restorer(
                servers=servers,
                slots=board,
                storage=storage,
                workflow=workflow,
                worker_id=worker_id,
                job_timeout=settings.job_timeout_seconds,
                # Each job that ends is measured for the ETAs before its change is published.
                on_change=observing(
                    queue.estimates, EventPublisher(publisher_client).publish, workflow=workflow_key(workflow)
                ),
                lease_seconds=settings.worker_lease_seconds,
                give_back=gate.release,
                requeue=queue.enqueue_first,
            )
        finally:
            queue.huey.gate = None
            await servers.close()
            await publisher_client.aclose()


def _export_server_metrics(servers: ComfyServers, board: SlotBoard) -> None:
    """Per-server gauges, read when Prometheus scrapes (in-flight counts come from Redis)."""

    def in_flight(url: str) -> float:
        try:
            return float(board.loads([url])[url])
        except (redis.RedisError, OSError):
            return float("nan")

    def latency(url: str) -> float:
        state = next(state for state in servers.states() if state.url == url)
        return state.latency if state.latency is not None else float("nan")

    def up(url: str) -> float:
        return 1.0 if url in servers.reachable() else 0.0

    metrics.COMFY_UP.set_function(lambda: 1.0 if servers.reachable() else 0.0)
    for url in servers.urls:
        metrics.SERVER_UP.labels(url).set_function(functools.partial(up, url))
        metrics.SERVER_IN_FLIGHT.labels(url).set_function(functools.partial(in_flight, url))
        metrics.SERVER_LATENCY.labels(url).set_function(functools.partial(latency, url))
        metrics.SERVER_DONE.labels(url)
        metrics.SERVER_FAILED.labels(url)


@contextlib.asynccontextmanager
async def reconciling(settings: Settings, *, restorer: Restorer, queue: JobQueue) -> AsyncIterator[Reconciler]:
    """The periodic reconciler, the pending-deadline sweep and the sweep of expired direct uploads
    running beside a worker, stopped on exit."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is required")
    client = aioredis.Redis.from_url(settings.redis_url, client_name="restoration-reconciler", socket_connect_timeout=2)
    reconciler = Reconciler(
        restorer=restorer,
        queue=queue,
        redis=client,
        interval=settings.reconcile_interval_seconds,
        pending_grace=settings.requeue_after_seconds,
    )
    try:
        async with (
            reconciler.running(),
            sweeping(
                timeout_seconds=settings.job_timeout_seconds,
                servers=settings.comfyui_urls,
                interval=settings.reconcile_interval_seconds,
                on_change=restorer.on_change,
                queue=queue,
            ),
            sweeping_uploads(storage=restorer.storage),
        ):
            yield reconciler
    finally:
        await client.aclose()


class LoopRunner:
    """The one sync→async bridge: runs `Restorer.run(job_id)` on `loop` for a caller in another
    thread (a Huey consumer thread, or the embedded worker's), and waits for it.

    `cancel_running()` cancels what is still running (shutdown after the grace period): those
    jobs are handed back, their prompts go on in ComfyUI and the reconciler settles them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, restorer: Restorer, *, gate: SlotGate | None) -> None:
        self._loop = loop
        self._restorer = restorer
        self._gate = gate
        self._running: set[concurrent.futures.Future[None]] = set()

    def __call__(self, job_id: str) -> None:
        # The slot this consumer thread reserved before it took the message goes with the job.
        slot = self._gate.take() if self._gate is not None else None
        future = asyncio.run_coroutine_threadsafe(self._restorer.run(job_id, slot), self._loop)
        self._running.add(future)
        try:
            future.result()
        except concurrent.futures.CancelledError:
            log.warning("worker.job_handed_back", extra={"job_id": job_id})
        finally:
            self._running.discard(future)

    def cancel_running(self) -> int:
        running = list(self._running)
        for future in running:
            future.cancel()
        return len(running)


class WorkerRuntime:
    """`restoration worker`'s clients on their own event loop thread; executes the restore task."""

    def __init__(self, settings: Settings, workflow: Workflow, huey: FairHuey) -> None:
        self.settings = settings
        self.workflow = workflow
        self.queue = JobQueue(huey)
        self.worker_id = worker_identity()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="restore-loop", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self._runner: LoopRunner | None = None

    def start(self) -> None:
        self._thread.start()
        self.call(self._open())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the worker loop from any thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self) -> None:
        await open_database(self.settings.database_url)
        self._stack.push_async_callback(close_database)
        storage = await asyncio.to_thread(s3_storage, self.settings)
        restorer = await self._stack.enter_async_context(
            restorer_session(self.settings, self.workflow, storage=storage, worker_id=self.worker_id, queue=self.queue)
        )
        await self._stack.enter_async_context(reconciling(self.settings, restorer=restorer, queue=self.queue))
        self._runner = LoopRunner(self._loop, restorer, gate=self.queue.huey.gate)
        self.queue.serve(self._runner)
        log.info("worker.started", extra={"worker_id": self.worker_id, "comfyui": self.settings.comfyui_url})

    async def _close(self) -> None:
        # Jobs still running after the grace period are cancelled, not failed: their prompts go on
        # in ComfyUI and the reconciler settles them from there.
        if self._runner is not None:
            self._runner.cancel_running()
        await release_unfinished(self.worker_id)
        await self._stack.aclose()


async def release_unfinished(worker_id: str) -> None:
    """Hand whatever a stopping worker did not finish to the reconciler now."""
    try:
        released = await repository.release_leases(worker_id)
    except DatabaseUnavailable:
        log.warning("worker.release_failed", extra={"worker_id": worker_id, "note": "leases expire on their own"})
        return
    if released:
        log.warning("worker.released", extra={"jobs": released, "note": "left to the reconciler"})
