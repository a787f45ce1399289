"""The emulator's core: all state of one instance and the operations the HTTP routes call."""

import copy
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

from comfy.emulator.config import EmulatorConfig
from comfy.emulator.executor import Executor
from comfy.emulator.faults import Faults
from comfy.emulator.files import Folders
from comfy.emulator.hub import WebSocketHub
from comfy.emulator.node_defs import build_node_defs
from comfy.emulator.nodes import ModelCatalog
from comfy.emulator.state import PromptQueue, QueueItem, Recorder
from comfy.emulator.validation import PromptValidator

logger = logging.getLogger(__name__)


class ServerTrouble(Exception):
    """What makes aiohttp answer ``500 Internal Server Error / Server got itself in trouble``."""


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        root = config.root if config.root is not None else Path(tempfile.mkdtemp(prefix="comfy-emulator-"))
        self.folders = Folders(Path(root).resolve())
        self.folders.create()
        self.catalog = ModelCatalog.build(config.models)
        self.defs = build_node_defs(self.catalog)
        self.validator = PromptValidator(self.defs, lambda name: self.folders.annotated(name).exists())
        self.hub = WebSocketHub()
        self.queue = PromptQueue(self._queue_updated)
        self.executor = Executor(queue=self.queue, hub=self.hub, defs=self.defs, folders=self.folders, config=config)
        self.recorder = Recorder()
        self.number = 0
        self.faults = Faults()
        self._faults_left: int | None = None

    async def start(self) -> None:
        self.hub.start()
        self.executor.start()

    async def stop(self) -> None:
        await self.executor.stop()
        await self.hub.stop()

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def _queue_updated(self, item: QueueItem | None) -> None:
        if item is not None and item.silent:
            return
        self.hub.send("status", {"status": self.queue_info()})

    # --- POST /prompt --------------------------------------------------------------------------------

    def submit(self, body: Any) -> tuple[int, dict[str, Any]]:
        """ComfyUI's ``post_prompt``: (HTTP status, JSON body); raises :class:`ServerTrouble` for a 500."""
        try:
            status, response = self._submit(body)
        except ServerTrouble:
            self.recorder.prompt(body, 500, None)
            raise
        self.recorder.prompt(body, status, response)
        return status, response

    def _submit(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, (dict, list)):
            raise ServerTrouble(f"unexpected JSON body {type(body).__name__}")
        if isinstance(body, dict) and "number" in body:
            try:
                number: int | float = float(body["number"])
            except (TypeError, ValueError) as ex:
                raise ServerTrouble(str(ex)) from ex
        else:
            number = self.number
            if isinstance(body, dict) and body.get("front"):
                number = -number
            self.number += 1
        if not isinstance(body, dict) or "prompt" not in body:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": {}}

        prompt = body["prompt"]
        if isinstance(prompt, list) and not prompt:
            prompt = {}
        if not isinstance(prompt, dict):
            raise ServerTrouble(f"prompt is a {type(prompt).__name__}, not an object")
        prompt = copy.deepcopy(prompt)
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        targets = body.get("partial_execution_targets")
        result = self.validator.validate(prompt, targets if isinstance(targets, list) else None)
        extra_data = copy.deepcopy(body.get("extra_data", {}))
        if not isinstance(extra_data, dict):
            raise ServerTrouble("extra_data is not an object")
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not result.ok:
            logger.warning("emulator.prompt_invalid", extra={"error": result.error})
            return 400, {"error": result.error, "node_errors": result.node_errors}
        item = QueueItem(number, prompt_id, prompt, extra_data, result.outputs, self._take_faults())
        self.queue.put(item)
        logger.info(
            "emulator.prompt_queued", extra={"prompt_id": prompt_id, "number": number, "client_id": item.client_id}
        )
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}

    def _take_faults(self) -> Faults:
        faults = self.faults
        if self._faults_left is not None:
            self._faults_left -= 1
            if self._faults_left <= 0:
                self.faults, self._faults_left = Faults(), None
        return faults

    # --- control API -------------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self._faults_left = faults.times
        logger.info("emulator.faults_set", extra={"faults": faults.to_json()})

    async def reset(self) -> None:
        """Forget faults, queue, history, cache, counters and the request log; files stay on disk."""
        await self.executor.stop()
        self.queue.wipe()
        self.queue.drop_running()
        self.queue.wipe_history()
        self.executor.cache.clear()
        self.executor.interrupt_requested = False
        self.recorder.clear()
        self.number = 0
        self.faults, self._faults_left = Faults(), None
        self.executor.start()
        logger.info("emulator.reset")

    def snapshot(self) -> dict[str, Any]:
        return {
            "emulator": True,
            "root": str(self.folders.root),
            "faults": self.faults.to_json(),
            "faults_remaining": self._faults_left,
            "number": self.number,
            "prompts": self.recorder.prompts,
            "uploads": {"count": len(self.recorder.uploads), "names": [u["path"] for u in self.recorder.uploads]},
            "upload_log": self.recorder.uploads,
            "queue": {
                "running": list(self.queue.running),
                "pending": [item.prompt_id for item in self.queue.pending()],
            },
            "history": list(self.queue.history),
            "interrupts": self.recorder.interrupts,
            "queue_deletes": self.recorder.queue_deletes,
            "ws_clients": self.hub.routed_ids(),
            "ws_connections": [c.sid for c in self.hub.open_connections],
        }
