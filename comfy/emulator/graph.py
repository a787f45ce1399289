"""Graph mechanics of ComfyUI's executor: execution order, node signatures and the output cache.

``ExecutionList`` mirrors ``comfy_execution.graph.ExecutionList`` (a topological sort that prefers
nodes close to an output), so nodes run in the same order as on the real server (loaders before
``LoadImage`` in the Kontext graph). ``OutputCache`` is the "classic" cache: outputs are reused when
a node's signature (class, inputs, ancestors' signatures, LoadImage's file hash) is unchanged, and
only the current prompt's signatures are kept.
"""

import json
from collections.abc import Callable
from typing import Any

from comfy.emulator.nodes import NodeDef


class DependencyCycleError(Exception):
    """The graph has a cycle, so no node is ready to run."""


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
        and not isinstance(value[1], bool)
    )


class ExecutionList:
    """Which nodes still have to run for the requested outputs, and which one runs next."""

    def __init__(self, prompt: dict[str, Any], defs: dict[str, NodeDef], is_cached: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.defs = defs
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[int, bool]]] = {}

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, int, str]] = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if is_link(value):
                    source, socket = value[0], int(value[1])
                    if not self.is_cached(source):
                        stack.append(source)
                    links.append((source, socket, unique_id))
        for source, socket, target in links:
            self._add_strong_link(source, socket, target)

    def _add_strong_link(self, source: str, socket: int, target: str) -> None:
        if self.is_cached(source):
            return
        self.add_node(source)
        if target not in self.blocking[source]:
            self.blocking[source][target] = {}
            self.block_count[target] += 1
        self.blocking[source][target][socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def nodes(self) -> list[str]:
        return list(self.pending)

    def stage(self) -> str:
        ready = [node_id for node_id in self.pending if self.block_count[node_id] == 0]
        if not ready:
            raise DependencyCycleError("Dependency cycle detected")
        return self._ux_friendly_pick(ready)

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1

    def _is_output(self, node_id: str) -> bool:
        return self.defs[self.prompt[node_id]["class_type"]].output_node

    def _ux_friendly_pick(self, ready: list[str]) -> str:
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(blocked) for blocked in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return ready[0]


def node_signatures(prompt: dict[str, Any], is_changed: Callable[[str, dict[str, Any]], str]) -> dict[str, str]:
    """A cache key per node: its class, IS_CHANGED value and inputs, with links replaced by the source's key."""
    signatures: dict[str, str] = {}
    visiting: set[str] = set()

    def signature(node_id: str) -> str:
        if node_id in signatures:
            return signatures[node_id]
        if node_id not in prompt or node_id in visiting:
            return json.dumps(["unresolvable", node_id])
        visiting.add(node_id)
        node = prompt[node_id]
        inputs = node.get("inputs", {})
        parts: list[Any] = [node.get("class_type"), is_changed(node_id, node)]
        for name in sorted(inputs):
            value = inputs[name]
            if is_link(value):
                parts.append([name, "link", signature(value[0]), int(value[1])])
            else:
                parts.append([name, value])
        visiting.discard(node_id)
        signatures[node_id] = json.dumps(parts, sort_keys=True, default=str)
        return signatures[node_id]

    for node_id in prompt:
        signature(node_id)
    return signatures


class OutputCache:
    """Node outputs (and UI results of output nodes) by signature, kept for the current prompt only."""

    def __init__(self) -> None:
        self.outputs: dict[str, tuple[Any, ...]] = {}
        self.ui: dict[str, dict[str, Any]] = {}

    def keep_only(self, signatures: set[str]) -> None:
        for key in [k for k in self.outputs if k not in signatures]:
            del self.outputs[key]
        for key in [k for k in self.ui if k not in signatures]:
            del self.ui[key]

    def clear(self) -> None:
        self.outputs.clear()
        self.ui.clear()
