"""The node schema type (`NodeDef`), the model files the emulator pretends to have, and ``/object_info``.

Inputs are kept in ComfyUI's own ``INPUT_TYPES`` form (``{name: [type, options]}``): a V1 combo's type
is the Python list of allowed values (validated), a V3 combo's type is the string ``"COMBO"`` with the
values under ``options`` (not validated by 0.3.64, fact 6 of the protocol notes).
"""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

InputSpec = list[Any]  # [type, options]

RESTORE_WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "restore.json"

# Model-name combo inputs and the ComfyUI model folder each one lists.
MODEL_INPUTS: dict[str, str] = {
    "unet_name": "diffusion_models",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "vae_name": "vae",
    "ckpt_name": "checkpoints",
}

# The names of workflows/restore.json, in case the file cannot be read.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("flux1-dev-kontext_fp8_scaled.safetensors",),
    "text_encoders": ("clip_l.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"),
    "vae": ("ae.safetensors",),
    "checkpoints": (),
}


@dataclass(frozen=True)
class NodeDef:
    """One node class: its inputs, outputs and the ``/object_info`` metadata."""

    name: str
    required: dict[str, InputSpec]
    output: tuple[str, ...]
    category: str
    python_module: str
    display_name: str | None = None
    description: str = ""
    optional: dict[str, InputSpec] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    output_name: tuple[str, ...] | None = None
    output_tooltips: tuple[str | None, ...] | None = None
    output_node: bool = False
    v3: bool = False
    # Inputs checked by the node's VALIDATE_INPUTS instead of the generic combo/min/max checks.
    custom_validated: tuple[str, ...] = ()

    def inputs(self) -> list[tuple[str, str, InputSpec]]:
        """(name, category, spec) of every declared input, required first, in declaration order."""
        return [(n, "required", s) for n, s in self.required.items()] + [
            (n, "optional", s) for n, s in self.optional.items()
        ]

    def object_info(self, overrides: dict[str, InputSpec] | None = None) -> dict[str, Any]:
        overrides = overrides or {}
        required = {name: overrides.get(name, spec) for name, spec in self.required.items()}
        inputs: dict[str, Any] = {"required": required}
        order: dict[str, list[str]] = {"required": list(required)}
        if self.optional:
            inputs["optional"] = {name: overrides.get(name, spec) for name, spec in self.optional.items()}
            order["optional"] = list(self.optional)
        if self.hidden:
            inputs["hidden"] = dict(self.hidden)
            order["hidden"] = list(self.hidden)
        info: dict[str, Any] = {
            "input": inputs,
            "input_order": order,
            "output": list(self.output),
            "output_is_list": [False] * len(self.output),
            "output_name": list(self.output_name or self.output),
        }
        if self.v3:
            info["output_tooltips"] = list(self.output_tooltips or [None] * len(self.output))
        info.update(
            {
                "name": self.name,
                "display_name": self.display_name,
                "description": self.description,
                "python_module": self.python_module,
                "category": self.category,
                "output_node": self.output_node,
            }
        )
        if self.v3:
            info.update({"deprecated": False, "experimental": False, "api_node": False})
        elif self.output_tooltips is not None:
            info["output_tooltips"] = list(self.output_tooltips)
        return info


def workflow_model_names(path: Path = RESTORE_WORKFLOW) -> dict[str, set[str]]:
    """Model file names used by an API-format workflow, by model folder."""
    found: dict[str, set[str]] = {folder: set(names) for folder, names in DEFAULT_MODELS.items()}
    try:
        graph = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning(
            "emulator.models_unreadable",
            extra={"path": path, "error": repr(exc), "note": "using the built-in model names"},
        )
        return found
    for node in graph.values() if isinstance(graph, dict) else ():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        for name, folder in MODEL_INPUTS.items():
            value = inputs.get(name) if isinstance(inputs, dict) else None
            if isinstance(value, str):
                found[folder].add(value)
    return found


@dataclass(frozen=True)
class ModelCatalog:
    """The model files the emulator pretends to have, per ComfyUI model folder."""

    folders: dict[str, list[str]]

    @classmethod
    def build(cls, extra: Iterable[str] = ()) -> "ModelCatalog":
        names = workflow_model_names()
        extra = list(extra)
        return cls({folder: sorted(found | set(extra)) for folder, found in names.items()})

    def names(self, folder: str) -> list[str]:
        return list(self.folders.get(folder, []))


def object_info(defs: dict[str, NodeDef], input_files: list[str]) -> dict[str, Any]:
    """``GET /object_info``: every known class; LoadImage lists the files of the input folder."""
    return {name: node_object_info(d, input_files) for name, d in defs.items()}


def node_object_info(node: NodeDef, input_files: list[str]) -> dict[str, Any]:
    overrides: dict[str, InputSpec] = {}
    if node.name == "LoadImage":
        overrides["image"] = [sorted(input_files), {"image_upload": True}]
    return node.object_info(overrides)
