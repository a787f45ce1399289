"""Typed ComfyUI websocket messages.

Only what the backend acts on is modelled; unknown types and keys are ignored, because newer
ComfyUI versions keep adding both. Events are matched by `prompt_id`, read with `.get()`: the
`executing` replay a reconnecting socket receives carries no `prompt_id` at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Status:
    queue_remaining: int | None
    sid: str | None


@dataclass(frozen=True)
class Executing:
    prompt_id: str | None
    node: str | None  # None = the prompt is finished and its history is written


@dataclass(frozen=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class ProgressState:
    prompt_id: str | None
    nodes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str | None
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str | None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str | None
    node_id: str
    node_type: str
    exception_type: str
    exception_message: str


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str | None
    node_id: str | None
    node_type: str | None


Message = (
    Status
    | Executing
    | Progress
    | ProgressState
    | ExecutionCached
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
)


def parse_message(text: str) -> Message | None:
    """The typed form of one text frame, or None for frames the backend does not act on."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("data"), dict):
        return None
    kind, data = frame.get("type"), frame["data"]
    prompt_id = data.get("prompt_id")
    if kind == "executing":
        node = data.get("node")
        return Executing(prompt_id=prompt_id, node=None if node is None else str(node))
    if kind == "progress":
        return Progress(
            prompt_id=prompt_id,
            node=None if data.get("node") is None else str(data.get("node")),
            value=_number(data.get("value")),
            max=_number(data.get("max")),
        )
    if kind == "progress_state":
        nodes = data.get("nodes")
        return ProgressState(prompt_id=prompt_id, nodes=nodes if isinstance(nodes, dict) else {})
    if kind == "execution_cached":
        nodes = data.get("nodes")
        cached = tuple(str(node) for node in nodes) if isinstance(nodes, list) else ()
        return ExecutionCached(prompt_id=prompt_id, nodes=cached)
    if kind == "execution_success":
        return ExecutionSuccess(prompt_id=prompt_id)
    if kind == "execution_error":
        return ExecutionError(
            prompt_id=prompt_id,
            node_id=str(data.get("node_id", "?")),
            node_type=str(data.get("node_type", "?")),
            exception_type=str(data.get("exception_type", "")),
            exception_message=str(data.get("exception_message", "")).strip(),
        )
    if kind == "execution_interrupted":
        return ExecutionInterrupted(
            prompt_id=prompt_id,
            node_id=None if data.get("node_id") is None else str(data.get("node_id")),
            node_type=data.get("node_type"),
        )
    if kind == "status":
        info = data.get("status", {}).get("exec_info", {}) if isinstance(data.get("status"), dict) else {}
        remaining = info.get("queue_remaining") if isinstance(info, dict) else None
        return Status(queue_remaining=remaining if isinstance(remaining, int) else None, sid=data.get("sid"))
    return None


def describe_rejection(body: object) -> str:
    """A person-readable sentence from a /prompt 400 (or 200 with node_errors) body."""
    parts: list[str] = []
    if isinstance(body, dict):
        error = body.get("error")
        node_errors = body.get("node_errors")
        if isinstance(node_errors, dict) and node_errors:
            for node_id, entry in sorted(node_errors.items()):
                class_type = entry.get("class_type", "?") if isinstance(entry, dict) else "?"
                errors = entry.get("errors", []) if isinstance(entry, dict) else []
                reasons = "; ".join(
                    f"{e.get('details') or e.get('type')}: {e.get('message')}" for e in errors if isinstance(e, dict)
                )
                parts.append(f"node {node_id} ({class_type}): {reasons or 'invalid'}")
        elif isinstance(error, dict):
            message = str(error.get("message", "")).strip()
            details = str(error.get("details", "")).strip()
            parts.append(f"{message} ({details})" if details else message)
        elif isinstance(error, str):
            parts.append(error)
    return "ComfyUI rejected the workflow: " + ("; ".join(p for p in parts if p) or "no reason given")


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
