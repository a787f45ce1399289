"""The in-process worker of `restoration dev`: the same queue and pipeline, no second process.

A few asyncio tasks take job ids off the Huey queue (the blocking read runs in a thread) and run
the pipeline on the API's own event loop. Huey's consumer, with its signal handlers, is not
used, so Ctrl-C stays uvicorn's; on shutdown running jobs get `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import logging

from huey import RedisHuey

from tasks.restore import Restorer

log = logging.getLogger("restore.worker")


class EmbeddedWorker:
    def __init__(self, huey: RedisHuey, restorer: Restorer, *, concurrency: int) -> None:
        self._huey = huey
        self._restorer = restorer
        self._concurrency = concurrency
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"embedded-worker-{n}") for n in range(self._concurrency)
        ]

    async def stop(self, *, grace: float) -> None:
        self._stopping.set()
        _, pending = await asyncio.wait(self._tasks, timeout=grace) if self._tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                task = await asyncio.to_thread(self._huey.dequeue)  # blocks at most the read timeout (1 s)
            except Exception:  # the embedded Redis is restarting or gone: wait, then try again
                log.exception("worker.dequeue_failed")
                await asyncio.sleep(1)
                continue
            if task is not None:
                await self._restorer.run(str(task.args[0]))
