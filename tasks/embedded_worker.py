"""The in-process worker of `restoration dev`: the same queue, the same task, no second process.

A few asyncio tasks take messages off the Huey queue and execute them with Huey itself (the
blocking read and the task run in threads), so the one restore task of `tasks.queue` runs as in
`restoration worker`; its runner executes the pipeline on the API's own event loop. Huey's
consumer, with its signal handlers, is not used, so Ctrl-C stays uvicorn's; on shutdown running
jobs get `grace` seconds to finish, then are handed back to the reconciler.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from tasks.queue import JobQueue
from tasks.restore import Restorer
from tasks.runtime import LoopRunner, release_unfinished

log = logging.getLogger("restore.worker")

# After a failed read of the embedded Redis (restarting or gone), wait this long before the next.
DEQUEUE_RETRY_SECONDS = 1.0


class EmbeddedWorker:
    def __init__(self, queue: JobQueue, restorer: Restorer, *, concurrency: int) -> None:
        self._queue = queue
        self._restorer = restorer
        self._concurrency = concurrency
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: LoopRunner | None = None
        self._threads = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="embedded-worker")

    async def start(self) -> None:
        self._runner = LoopRunner(asyncio.get_running_loop(), self._restorer, gate=self._queue.huey.gate)
        self._queue.serve(self._runner)
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"embedded-worker-{n}") for n in range(self._concurrency)
        ]

    async def stop(self, *, grace: float) -> None:
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        if pending and self._runner is not None:
            self._runner.cancel_running()
            await asyncio.wait(pending)
            await release_unfinished(self._restorer.worker_id)
        self._threads.shutdown(wait=False)

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                # Dequeue and execute in ONE thread of our own: the slot the gate reserved for the
                # message travels with the thread, and jobs never take the API's default threads.
                await asyncio.get_running_loop().run_in_executor(self._threads, self._take_and_run)
            except Exception:  # the embedded Redis is restarting or gone: wait, then try again
                log.exception("worker.dequeue_failed")
                await asyncio.sleep(DEQUEUE_RETRY_SECONDS)

    def _take_and_run(self) -> None:
        huey = self._queue.huey
        task = huey.dequeue()  # waits at most the gate's wait plus the read timeout
        if task is not None:
            huey.execute(task)
