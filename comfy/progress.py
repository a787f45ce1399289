"""How far a prompt has got, from ComfyUI's own progress messages.

Every node of the graph weighs 1, except nodes with a progress bar (samplers), which weigh their
step count: on a GPU the sampler is where the time goes. `progress_state` (newer servers) gives
each node's state and value/max; the legacy `progress` message gives a sampler's step;
`execution_cached` marks nodes as done; on older servers without `progress_state`, a node that
starts executing means the previous one finished. The value never goes backwards.
"""

from __future__ import annotations

from typing import Any

from comfy.messages import Executing, ExecutionCached, Message, Progress, ProgressState


class ProgressTracker:
    def __init__(self, graph: dict[str, Any]) -> None:
        self._weights: dict[str, float] = {}
        for node_id, node in graph.items():
            steps = node.get("inputs", {}).get("steps") if isinstance(node, dict) else None
            self._weights[str(node_id)] = float(steps) if isinstance(steps, int) and steps > 0 else 1.0
        self._total = sum(self._weights.values()) or 1.0
        self._done: dict[str, float] = {}
        self._current: str | None = None
        self.value = 0.0

    def feed(self, message: Message) -> float | None:
        """Take one message; the new progress (0..1) when it moved forward, else None."""
        if isinstance(message, ProgressState):
            for node_id, state in message.nodes.items():
                if isinstance(state, dict):
                    self._set(self._node(node_id, state), _fraction(state))
        elif isinstance(message, Progress) and message.node is not None and message.max > 0:
            self._set(message.node, message.value / message.max)
        elif isinstance(message, ExecutionCached):
            for node_id in message.nodes:
                self._set(node_id, 1.0)
        elif isinstance(message, Executing) and message.node is not None:
            if self._current is not None and self._current != message.node:
                self._set(self._current, 1.0)
            self._current = message.node
        else:
            return None
        done = sum(self._weights[node] * fraction for node, fraction in self._done.items())
        value = min(1.0, done / self._total)
        if value <= self.value:
            return None
        self.value = value
        return value

    def _node(self, node_id: str, state: dict[str, Any]) -> str:
        if node_id in self._weights:
            return node_id
        for key in ("real_node_id", "display_node_id", "parent_node_id"):
            candidate = state.get(key)
            if candidate is not None and str(candidate) in self._weights:
                return str(candidate)
        return node_id

    def _set(self, node_id: str, fraction: float) -> None:
        if node_id in self._weights:
            self._done[node_id] = max(self._done.get(node_id, 0.0), min(1.0, max(0.0, fraction)))


def _fraction(state: dict[str, Any]) -> float:
    if state.get("state") == "finished":
        return 1.0
    value, maximum = state.get("value"), state.get("max")
    if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
        return float(value) / float(maximum)
    return 0.0
