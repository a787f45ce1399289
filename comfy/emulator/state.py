"""In-memory server state: the prompt queue, the history, and what the control API reports.

Like ComfyUI, nothing here survives a restart. ``queue_pending`` is kept in heap order (fact 17).
"""

import asyncio
import copy
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfy.emulator.faults import Faults

MAXIMUM_HISTORY_SIZE = 10000


@dataclass
class QueueItem:
    """A queued prompt: ComfyUI's 5-tuple plus the faults it was queued with."""

    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    faults: Faults = field(default_factory=Faults)

    @property
    def client_id(self) -> str | None:
        client_id = self.extra_data.get("client_id")
        return None if client_id is None else str(client_id)

    @property
    def silent(self) -> bool:
        return self.faults.mode == "silent_socket"

    def as_json(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


# Called on every queue change with the item that caused it (None for wipes), to broadcast `status`.
QueueListener = Callable[["QueueItem | None"], None]


class PromptQueue:
    """Pending heap, the running item, and the history (ComfyUI's ``execution.PromptQueue``)."""

    def __init__(self, on_change: QueueListener) -> None:
        self._on_change = on_change
        self._heap: list[tuple[Any, str, int, QueueItem]] = []
        self._seq = itertools.count()
        self._not_empty = asyncio.Event()
        self.running: dict[str, QueueItem] = {}
        self.history: dict[str, dict[str, Any]] = {}

    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item.number, item.prompt_id, next(self._seq), item))
        self._on_change(item)
        self._not_empty.set()

    async def get(self) -> QueueItem:
        while not self._heap:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = heapq.heappop(self._heap)[3]
        self.running[item.prompt_id] = item
        self._on_change(item)
        return item

    def task_done(self, item: QueueItem, result: dict[str, Any], status: dict[str, Any]) -> None:
        self.running.pop(item.prompt_id, None)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        self.history[item.prompt_id] = {
            "prompt": copy.deepcopy(item.as_json()),
            "outputs": copy.deepcopy(result["outputs"]),
            "status": copy.deepcopy(status),
            "meta": copy.deepcopy(result["meta"]),
        }
        self._on_change(item)

    def drop_running(self) -> None:
        """Forget the running item without a history entry (used by the control API's reset)."""
        self.running.clear()

    def wipe(self) -> None:
        self._heap = []
        self._on_change(None)

    def delete(self, prompt_id: str) -> bool:
        """Remove one pending item; the running one is never affected (fact 18)."""
        for index, entry in enumerate(self._heap):
            if entry[3].prompt_id == prompt_id:
                if len(self._heap) == 1:
                    self.wipe()
                else:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                self._on_change(None)
                return True
        return False

    def pending(self) -> list[QueueItem]:
        return [entry[3] for entry in self._heap]

    def queue_json(self) -> dict[str, Any]:
        return {
            "queue_running": [item.as_json() for item in self.running.values()],
            "queue_pending": [item.as_json() for item in self.pending()],
        }

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1
    ) -> dict[str, Any]:
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {} if entry is None else {prompt_id: copy.deepcopy(entry)}
        out: dict[str, Any] = {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        for i, key in enumerate(self.history):
            if i >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def wipe_history(self) -> None:
        self.history.clear()

    def delete_history(self, prompt_id: str) -> None:
        self.history.pop(prompt_id, None)


@dataclass
class Recorder:
    """What the backend under test did to the emulator, for ``GET /_emulator/state``."""

    prompts: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    queue_deletes: list[Any] = field(default_factory=list)

    def prompt(self, body: Any, status: int, response: Any) -> None:
        entry: dict[str, Any] = {"received_at": time.time(), "body": body, "http_status": status}
        if isinstance(body, dict):
            entry["prompt"] = body.get("prompt")
            entry["client_id"] = body.get("client_id")
        if isinstance(response, dict):
            entry["prompt_id"] = response.get("prompt_id")
            entry["number"] = response.get("number")
            entry["node_errors"] = response.get("node_errors")
            entry["error"] = response.get("error")
        self.prompts.append(entry)

    def clear(self) -> None:
        self.prompts.clear()
        self.uploads.clear()
        self.interrupts.clear()
        self.queue_deletes.clear()
