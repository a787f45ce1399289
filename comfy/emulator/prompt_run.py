"""One execution of one prompt, node by node, as ComfyUI's `execution.py` runs it (messages, cache, faults)."""

import asyncio
import logging
import time
import traceback
from typing import Any, Protocol

from comfy.emulator.config import EmulatorConfig
from comfy.emulator.files import Folders, file_hash
from comfy.emulator.graph import DependencyCycleError, ExecutionList, OutputCache, is_link, node_signatures
from comfy.emulator.hub import (
    PREVIEW_IMAGE,
    PREVIEW_IMAGE_WITH_METADATA,
    WebSocketHub,
    encode_preview,
    encode_preview_with_metadata,
)
from comfy.emulator.nodes import NodeDef
from comfy.emulator.ops import NODE_FUNCTIONS
from comfy.emulator.state import QueueItem

logger = logging.getLogger(__name__)

OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might "
    "have accidentally set the batch_size to a large number."
)
_FAKE_TRACEBACK = [
    '  File "/comfyui/execution.py", line 496, in execute\n'
    "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, "
    "obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb)\n",
    '  File "/comfyui/execution.py", line 315, in get_output_data\n'
    "    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, "
    "allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb)\n",
    '  File "/comfyui/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
    '  File "<comfyui emulator>", line 1, in injected_fault\n    raise injected\n',
]
# The KSampler's "hang" and non-sampler hangs poll the interrupt flag this often (seconds).
_HANG_POLL = 0.02


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


class InjectedFault(Exception):
    """An ``execution_error`` fault, reported with the exception type the test asked for."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RunHost(Protocol):
    """What a run needs of the executor that started it."""

    interrupt_requested: bool
    config: EmulatorConfig
    cache: OutputCache
    defs: dict[str, NodeDef]
    hub: WebSocketHub
    folders: Folders

    def large_png(self) -> bytes: ...

    def emit(self, item: QueueItem, event: str | int, data: Any, sid: str | None) -> None: ...


class PromptRun:
    """One execution of one prompt; also the :class:`~comfy.emulator.ops.NodeContext` its nodes see."""

    def __init__(self, executor: RunHost, item: QueueItem) -> None:
        self.executor = executor
        self.item = item
        self.hub = executor.hub
        self.folders = executor.folders
        self.prompt = item.prompt
        self.extra_data = item.extra_data
        self.client_id = item.client_id
        self.faults = item.faults
        service_time = self.faults.service_time
        self.service_time = executor.config.service_time if service_time is None else service_time
        self.hang = False
        self.messages: list[list[Any]] = []
        self.executed: list[str] = []
        self.cached: set[str] = set()
        self.signatures: dict[str, str] = {}
        self.current_node: str | None = None
        self._progress: dict[str, dict[str, Any]] = {}
        self._target: str | None = None
        self._large_frame_sent = False

    # --- NodeContext -------------------------------------------------------------------------------

    def check_interrupt(self) -> None:
        if self.executor.interrupt_requested:
            raise Interrupted("Processing interrupted")

    def wants_preview(self) -> bool:
        return self.executor.config.preview if self.faults.preview is None else self.faults.preview

    async def progress(self, value: int, total: int, preview: bytes | None) -> None:
        """A sampler step finished (ComfyUI's progress hook): interrupt check, then the step's messages."""
        self.check_interrupt()
        node_id = self.current_node or ""
        entry = self._entry(node_id)
        entry["value"], entry["max"] = value, total
        self._send_progress_state()
        with_metadata = preview is not None and self.hub.supports_preview_metadata(self.client_id)
        if preview is not None and with_metadata:
            metadata = {
                "node_id": node_id,
                "prompt_id": self.item.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": "image/jpeg",
            }
            self._emit(PREVIEW_IMAGE_WITH_METADATA, encode_preview_with_metadata(preview, metadata), self.client_id)
        data = {"value": value, "max": total, "prompt_id": self.item.prompt_id, "node": node_id}
        self._emit("progress", data, self.client_id)
        if preview is not None and not with_metadata:
            self._emit(PREVIEW_IMAGE, encode_preview(preview, "JPEG"), self.client_id)

    # --- the run ----------------------------------------------------------------------------------

    async def execute(self) -> bool:
        self.executor.interrupt_requested = False
        self.hub.client_id = self.client_id
        self.hub.last_node_id = None
        prompt_id = self.item.prompt_id
        self._add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        cache = self.executor.cache
        self.signatures = node_signatures(self.prompt, self._is_changed)
        cache.keep_only(set(self.signatures.values()))
        # A prompt carrying a node fault runs every node, so the fault fires whatever ran before.
        use_cache = self.faults.mode not in ("execution_error", "die", "hang")
        cached_nodes = [n for n in self.prompt if use_cache and self.signatures[n] in cache.outputs]
        self.cached = set(cached_nodes)
        self._add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)

        execution = ExecutionList(self.prompt, self.executor.defs, lambda node_id: node_id in self.cached)
        for output in self.item.outputs:
            execution.add_node(output)
        self._choose_target(execution.nodes())

        success = False
        while not execution.is_empty():
            try:
                node_id = execution.stage()
            except DependencyCycleError as ex:
                self._fail(execution.nodes()[0], ex, None)
                break
            if not await self._execute_node(node_id):
                break
            execution.complete(node_id)
        else:
            self._add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
            success = True
        self.hub.last_node_id = None
        return success

    def history_result(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        done = set(self.executed) | self.cached
        for node_id in self.prompt:
            ui = self.executor.cache.ui.get(self.signatures.get(node_id, ""))
            if node_id in done and ui is not None:
                outputs[node_id] = ui["output"]
                meta[node_id] = ui["meta"]
        return {"outputs": outputs, "meta": meta}

    def _choose_target(self, to_run: list[str]) -> None:
        if self.faults.node is not None:
            return
        samplers = [n for n in to_run if self.prompt[n]["class_type"] == "KSampler"]
        self._target = samplers[0] if samplers else None

    def _is_target(self, node_id: str) -> bool:
        if self.faults.node is not None:
            return self.faults.node in (node_id, self.prompt[node_id]["class_type"])
        if self._target is None:
            self._target = node_id  # no sampler: the first node that executes
        return node_id == self._target

    def _is_changed(self, node_id: str, node: dict[str, Any]) -> str:
        if node.get("class_type") == "LoadImage":
            image = node.get("inputs", {}).get("image")
            if isinstance(image, str):
                return file_hash(self.folders.annotated(image))
        return ""

    async def _execute_node(self, node_id: str) -> bool:
        node = self.prompt[node_id]
        class_type = node["class_type"]
        signature = self.signatures[node_id]
        cache = self.executor.cache
        if node_id in self.cached:
            ui = cache.ui.get(signature)
            self._maybe_send_large_frame(node_id)
            if self.client_id is not None:
                output = ui["output"] if ui is not None else None
                data = {"node": node_id, "display_node": node_id, "output": output, "prompt_id": self.item.prompt_id}
                self._emit("executed", data, self.client_id)
            self._finish(node_id)
            return True

        self.current_node = node_id
        self._start(node_id)
        inputs: dict[str, Any] | None = None
        try:
            inputs = self._resolve_inputs(node_id)
            if self.client_id is not None:
                if not self.item.silent:
                    self.hub.last_node_id = node_id
                data = {"node": node_id, "display_node": node_id, "prompt_id": self.item.prompt_id}
                self._emit("executing", data, self.client_id)
            fault_here = self.faults.mode in ("execution_error", "die", "hang") and self._is_target(node_id)
            if fault_here and self.faults.mode == "die":
                await self._die(node_id)
            self.check_interrupt()
            if fault_here and self.faults.mode == "execution_error":
                raise InjectedFault(self.faults.exception_type, self.faults.message)
            self.hang = fault_here and self.faults.mode == "hang"
            if self.hang and class_type != "KSampler":
                while True:
                    await asyncio.sleep(_HANG_POLL)
                    self.check_interrupt()
            outputs, ui = await NODE_FUNCTIONS[class_type](self, inputs)
            if ui:
                self._maybe_send_large_frame(node_id)
                cache.ui[signature] = {
                    "meta": {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id},
                    "output": ui,
                }
                if self.client_id is not None:
                    data = {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.item.prompt_id}
                    self._emit("executed", data, self.client_id)
            cache.outputs[signature] = outputs
        except Interrupted:
            logger.info("emulator.node_interrupted", extra={"node_id": node_id})
            self._interrupted(node_id)
            return False
        except Exception as ex:
            logger.warning(
                "emulator.node_failed", extra={"node_id": node_id, "class_type": class_type, "error": repr(ex)}
            )
            self._fail(node_id, ex, inputs)
            return False
        self._finish(node_id)
        self.executed.append(node_id)
        return True

    def _resolve_inputs(self, node_id: str) -> dict[str, Any]:
        node = self.prompt[node_id]
        resolved: dict[str, Any] = {}
        for name, value in node["inputs"].items():
            if is_link(value):
                source = self.executor.cache.outputs.get(self.signatures[value[0]])
                resolved[name] = None if source is None else source[int(value[1])]
            else:
                resolved[name] = value
        return resolved

    async def _die(self, node_id: str) -> None:
        logger.warning("emulator.fault_die", extra={"node_id": node_id, "note": "killing the emulator process now"})
        await self.hub.flush()
        await asyncio.sleep(0.05)  # let the kernel push the last frames out
        self.executor.config.on_die()
        await asyncio.Future()  # in-process use with a non-lethal on_die: stay "running" until reset

    def _maybe_send_large_frame(self, node_id: str) -> None:
        if self.faults.large_binary_frame and not self._large_frame_sent:
            self._large_frame_sent = True
            self._emit(PREVIEW_IMAGE, encode_preview(self.executor.large_png(), "PNG"), self.client_id)

    # --- messages ---------------------------------------------------------------------------------

    def _emit(self, event: str | int, data: Any, sid: str | None) -> None:
        self.executor.emit(self.item, event, data, sid)

    def _add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": _now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            self._emit(event, data, self.client_id)

    def _entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._progress:
            self._progress[node_id] = {
                "value": 0,
                "max": 1,
                "state": "pending",
                "node_id": node_id,
                "prompt_id": self.item.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
        return self._progress[node_id]

    def _start(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update({"state": "running", "value": 0.0, "max": 1.0})
        self._send_progress_state()

    def _finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update({"state": "finished", "value": entry["max"]})
        self._send_progress_state()

    def _send_progress_state(self) -> None:
        nodes = {k: dict(v) for k, v in self._progress.items() if v["state"] != "pending"}
        self._emit("progress_state", {"prompt_id": self.item.prompt_id, "nodes": nodes}, self.client_id)

    def _interrupted(self, node_id: str) -> None:
        data = {
            "prompt_id": self.item.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
        }
        self._add_message("execution_interrupted", data, broadcast=True)

    def _fail(self, node_id: str, ex: BaseException, inputs: dict[str, Any] | None) -> None:
        if isinstance(ex, InjectedFault):
            exception_type = ex.exception_type
            tb = list(_FAKE_TRACEBACK)
        else:
            exception_type = _full_type_name(type(ex))
            tb = traceback.format_tb(ex.__traceback__)
        tips = OOM_TIPS if exception_type.endswith("OutOfMemoryError") else ""
        current_inputs = {} if inputs is None else {k: [_format_value(v)] for k, v in inputs.items()}
        data = {
            "prompt_id": self.item.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
            "exception_message": f"{ex}\n{tips}",
            "exception_type": exception_type,
            "traceback": tb,
            "current_inputs": current_inputs,
            "current_outputs": list(self.prompt),
        }
        self._add_message("execution_error", data, broadcast=False)
