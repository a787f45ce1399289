"""The restoration workflow and where a job's values go in it.

`restore.json` is a ComfyUI API-format graph; `restore.bindings.json` beside it names the node and
input that receive the job's image, denoise, seed and megapixels, and the output node to read.
Both are read and validated once at start-up (`load_workflow`), so a binding to a missing node or
input stops the process with a clear message instead of failing every job.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED = ("image", "denoise", "output")
OPTIONAL = ("seed", "megapixels")
MEGAPIXELS = 1.0
# ComfyUI seeds are u64 (KSampler's `seed` max is 2**64 - 1).
MAX_SEED = 2**64 - 1


class WorkflowError(Exception):
    """The workflow or its bindings cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class InputRef:
    node: str
    input: str


@dataclass(frozen=True)
class Workflow:
    graph: dict[str, Any]
    image: InputRef
    denoise: InputRef
    output_node: str
    seed: InputRef | None = None
    megapixels: InputRef | None = None
    source: str = ""

    @property
    def default_denoise(self) -> float:
        return float(self.graph[self.denoise.node]["inputs"][self.denoise.input])

    def build(
        self, *, image_name: str, denoise: float, filename_prefix: str, seed: int | None = None
    ) -> dict[str, Any]:
        """A fresh prompt for one job: the graph with this job's values bound in."""
        prompt = copy.deepcopy(self.graph)
        prompt[self.image.node]["inputs"][self.image.input] = image_name
        prompt[self.denoise.node]["inputs"][self.denoise.input] = denoise
        if self.seed is not None:
            prompt[self.seed.node]["inputs"][self.seed.input] = (
                seed if seed is not None else random.randint(0, MAX_SEED)
            )
        if self.megapixels is not None:
            prompt[self.megapixels.node]["inputs"][self.megapixels.input] = MEGAPIXELS
        # A per-job prefix: ComfyUI's cache would otherwise answer an identical prompt with an
        # older run's file, and one folder per job keeps SaveImage's directory listing small.
        prompt[self.output_node]["inputs"]["filename_prefix"] = filename_prefix
        return prompt


def load_workflow(workflow_path: Path, bindings_path: Path) -> Workflow:
    graph = _read_json(workflow_path, "workflow")
    bindings = _read_json(bindings_path, "bindings")
    if not graph or not all(isinstance(node, dict) and "class_type" in node for node in graph.values()):
        raise WorkflowError(f"{workflow_path}: not a ComfyUI API-format graph (every node needs a class_type)")
    missing = [name for name in REQUIRED if name not in bindings]
    if missing:
        raise WorkflowError(f"{bindings_path}: missing binding(s): {', '.join(missing)}")
    refs: dict[str, InputRef] = {}
    for name in ("image", "denoise", *OPTIONAL):
        if name in bindings:
            refs[name] = _input_ref(graph, bindings[name], name, bindings_path)
    output = bindings["output"]
    output_node = str(output.get("node")) if isinstance(output, dict) else ""
    if output_node not in graph:
        raise WorkflowError(f"{bindings_path}: binding 'output' names node {output_node!r}, not in the workflow")
    if "filename_prefix" not in graph[output_node].get("inputs", {}):
        raise WorkflowError(
            f"{bindings_path}: output node {output_node} ({graph[output_node]['class_type']}) "
            "has no filename_prefix input; it must be a SaveImage-like node"
        )
    workflow = Workflow(graph=graph, output_node=output_node, source=str(workflow_path), **refs)
    try:
        default = workflow.default_denoise
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"{workflow_path}: the bound denoise input is not a number") from exc
    if not 0.0 <= default <= 1.0:
        raise WorkflowError(f"{workflow_path}: the workflow's denoise {default} is outside 0..1")
    return workflow


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"{what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WorkflowError(f"{what} file {path} must hold a JSON object")
    return data


def _input_ref(graph: dict[str, Any], binding: object, name: str, path: Path) -> InputRef:
    if not isinstance(binding, dict) or "node" not in binding or "input" not in binding:
        raise WorkflowError(f'{path}: binding {name!r} must be {{"node": ..., "input": ...}}')
    node, input_name = str(binding["node"]), str(binding["input"])
    if node not in graph:
        raise WorkflowError(f"{path}: binding {name!r} names node {node!r}, which is not in the workflow")
    if input_name not in graph[node].get("inputs", {}):
        raise WorkflowError(
            f"{path}: binding {name!r} names input {input_name!r}, which node {node} "
            f"({graph[node]['class_type']}) does not have"
        )
    return InputRef(node=node, input=input_name)
