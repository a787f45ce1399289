"""Runs queued prompts one at a time and emits ComfyUI's websocket messages in ComfyUI's order.

Per prompt (fact 11): ``execution_start`` -> ``execution_cached`` -> per executed node, in execution
order: ``progress_state`` (running) -> ``executing`` -> [KSampler steps: ``progress_state`` + ``progress``
+ preview frame] -> [output nodes: ``executed``] -> ``progress_state`` (finished) -> ...
-> ``execution_success`` | ``execution_error`` | ``execution_interrupted``; then the history entry is
written, ``status`` is broadcast and ``executing {node: null}`` is sent last.
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from comfy.emulator.config import EmulatorConfig
from comfy.emulator.files import Folders
from comfy.emulator.graph import OutputCache
from comfy.emulator.hub import (
    WebSocketHub,
)
from comfy.emulator.nodes import NodeDef
from comfy.emulator.ops import noise_png
from comfy.emulator.prompt_run import PromptRun
from comfy.emulator.state import PromptQueue, QueueItem

logger = logging.getLogger(__name__)


class Executor:
    """The single worker: takes prompts off the queue and runs them to completion."""

    def __init__(
        self,
        *,
        queue: PromptQueue,
        hub: WebSocketHub,
        defs: dict[str, NodeDef],
        folders: Folders,
        config: EmulatorConfig,
    ) -> None:
        self.queue = queue
        self.hub = hub
        self.defs = defs
        self.folders = folders
        self.config = config
        self.cache = OutputCache()
        self.interrupt_requested = False
        self._task: asyncio.Task[None] | None = None
        self._large_png: bytes | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="emulator-executor")

    async def stop(self) -> None:
        """Abandon whatever runs (no messages, no history), as a reset or shutdown does."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.hub.client_id = None
        self.hub.last_node_id = None

    def request_interrupt(self, prompt_id: str | None) -> bool:
        """``POST /interrupt``: global without an id, otherwise only if that id is running."""
        if prompt_id and prompt_id not in self.queue.running:
            logger.info("emulator.interrupt_ignored", extra={"prompt_id": prompt_id, "note": "not currently running"})
            return False
        self.interrupt_requested = True
        return True

    def large_png(self) -> bytes:
        if self._large_png is None:
            self._large_png = noise_png()
        return self._large_png

    def emit(self, item: QueueItem, event: str | int, data: Any, sid: str | None) -> None:
        if not item.silent:
            self.hub.send(event, data, sid)

    async def _run_forever(self) -> None:
        while True:
            item = await self.queue.get()
            await self.run(item)

    async def run(self, item: QueueItem) -> None:
        logger.info("emulator.prompt_started", extra={"prompt_id": item.prompt_id, "faults": item.faults.mode})
        started = time.perf_counter()
        run = PromptRun(self, item)
        try:
            success = await run.execute()
        except Exception:  # an emulator bug must not kill the worker: report the prompt as failed
            logger.exception("emulator.prompt_crashed", extra={"prompt_id": item.prompt_id})
            success = False
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": run.messages,
        }
        self.queue.task_done(item, run.history_result(), status)
        if item.client_id is not None:
            self.emit(item, "executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)
        logger.info(
            "emulator.prompt_done",
            extra={
                "prompt_id": item.prompt_id,
                "duration": round(time.perf_counter() - started, 3),
                "status": status["status_str"],
            },
        )
