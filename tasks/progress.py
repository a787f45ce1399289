"""Progress reporting for one running job, throttled: at most one update every `min_interval`,
and the latest value is always delivered (a trailing update), so a long final node does not
leave watchers looking at an old figure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("restore.progress")

# ~5 updates a second per job: smooth in a progress bar, cheap for the database and Redis.
MIN_INTERVAL = 0.2


class ProgressReporter:
    def __init__(self, sink: Callable[[float], Awaitable[None]], *, min_interval: float = MIN_INTERVAL) -> None:
        self._sink = sink
        self._min_interval = min_interval
        self._latest = 0.0
        self._sent = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, value: float) -> None:
        if value > self._latest:
            self._latest = value
            self._wake.set()

    async def __aenter__(self) -> ProgressReporter:
        self._task = asyncio.create_task(self._run(), name="progress-reporter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = last + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._latest > self._sent:
                self._sent = self._latest
                last = time.monotonic()
                try:
                    await self._sink(self._sent)
                except Exception:  # progress is cosmetic: never let it break the job
                    log.exception("restore.progress_failed")
