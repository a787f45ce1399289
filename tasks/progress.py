"""Progress reporting for one running job, throttled: at most one update every `min_interval`,
and the latest value is always delivered (a trailing update), so a long final node does not
leave watchers looking at an old figure.

Stopping never depends on a cancellation arriving: on Python 3.11, `asyncio.wait_for` (used
inside redis-py) can swallow one when a reply lands in the same loop turn. The reporter is told
to stop with a flag as well, and the job's own cancellation is never absorbed while it waits.
"""

from __future__ import annotations

import asyncio
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
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def update(self, value: float) -> None:
        if value > self._latest:
            self._latest = value
            self._wake.set()

    async def __aenter__(self) -> ProgressReporter:
        self._task = asyncio.create_task(self._run(), name="progress-reporter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        self._task.cancel()
        # asyncio.wait neither raises the reporter's CancelledError nor hides ours.
        await asyncio.wait([self._task])

    async def _run(self) -> None:
        last = float("-inf")
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            wait = last + self._min_interval - time.monotonic()
            if wait > 0 and not self._closing:
                await asyncio.sleep(wait)
            if self._closing:
                return
            if self._latest > self._sent:
                self._sent = self._latest
                last = time.monotonic()
                try:
                    await self._sink(self._sent)
                except Exception:  # progress is cosmetic: never let it break the job
                    log.exception("restore.progress_failed")
