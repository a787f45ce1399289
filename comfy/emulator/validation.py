"""``POST /prompt`` validation, following ComfyUI 0.3.64's ``execution.validate_prompt`` step by step.

The structure (and therefore the quirks) is the real one: a link to a missing node raises ``KeyError``
inside the linked node's validation and is reported on that node as ``exception_during_inner_validation``;
an invalid branch only drops the outputs that depend on it; literal INT/FLOAT/STRING inputs are
converted in place (the stored prompt holds the converted values).
"""

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfy.emulator.nodes import NodeDef

ValidateResult = tuple[bool, list[dict[str, Any]], str]


@dataclass
class ValidationResult:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def _types_match(received: Any, expected: Any) -> bool:
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _prompt_error(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


class PromptValidator:
    """Validates API-format prompts against the known node classes.

    ``image_exists`` answers LoadImage's custom validation (does the annotated file exist?).
    """

    def __init__(self, defs: dict[str, NodeDef], image_exists: Callable[[str], bool]) -> None:
        self.defs = defs
        self.image_exists = image_exists

    def validate(self, prompt: dict[str, Any], partial_targets: list[str] | None = None) -> ValidationResult:
        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return ValidationResult(
                    False,
                    _prompt_error(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                )
            class_type = node["class_type"]
            node_def = self.defs.get(class_type) if isinstance(class_type, str) else None
            if node_def is None:
                return ValidationResult(
                    False,
                    _prompt_error(
                        "invalid_prompt",
                        f"Cannot execute because node {class_type} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                )
            if node_def.output_node and (partial_targets is None or node_id in partial_targets):
                outputs.append(node_id)
        if not outputs:
            return ValidationResult(False, _prompt_error("prompt_no_outputs", "Prompt has no outputs", ""), [])

        good: list[str] = []
        failed: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, ValidateResult] = {}
        for output in outputs:
            try:
                ok, reasons, _ = self._validate_inputs(prompt, output, validated)
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                ok = False
                reasons = [
                    {
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(ex),
                        "extra_info": {
                            "exception_type": _full_type_name(typ or type(ex)),
                            "traceback": traceback.format_tb(tb),
                        },
                    }
                ]
                validated[output] = (False, reasons, output)
            if ok:
                good.append(output)
                continue
            failed.append((output, reasons))
            for node_id, (node_ok, node_reasons, _) in validated.items():
                # Nodes downstream of a bad node are invalid too but carry no reasons: not reported.
                if node_ok or not node_reasons:
                    continue
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(output)

        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errors in failed for e in errors)
            error = _prompt_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return ValidationResult(False, error, [], node_errors)
        return ValidationResult(True, None, good, node_errors)

    def _validate_inputs(
        self, prompt: dict[str, Any], unique_id: str, validated: dict[str, ValidateResult]
    ) -> ValidateResult:
        if unique_id in validated:
            return validated[unique_id]
        inputs = prompt[unique_id]["inputs"]
        node_def = self.defs[prompt[unique_id]["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True

        for name, category, spec in node_def.inputs():
            input_type, options = spec[0], spec[1]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            val = inputs[name]
            info = [input_type, options]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            "details": name,
                            "extra_info": {"input_name": name, "input_config": info, "received_value": val},
                        }
                    )
                    continue
                source_id = val[0]
                # Deliberately outside the try below, as in ComfyUI: a missing node raises here and is
                # reported by the caller against *this* node.
                source_def = self.defs[prompt[source_id]["class_type"]]
                received_type = source_def.output[val[1]]
                if not _types_match(received_type, input_type):
                    errors.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": f"{name}, {received_type} != {input_type}",
                            "extra_info": {
                                "input_name": name,
                                "input_config": info,
                                "received_type": received_type,
                                "linked_node": val,
                            },
                        }
                    )
                    continue
                try:
                    inner_ok, _, _ = self._validate_inputs(prompt, source_id, validated)
                    if not inner_ok:
                        valid = False
                        continue
                except Exception as ex:
                    typ, _, tb = sys.exc_info()
                    valid = False
                    validated[source_id] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(ex),
                                "extra_info": {
                                    "input_name": name,
                                    "input_config": info,
                                    "exception_message": str(ex),
                                    "exception_type": _full_type_name(typ or type(ex)),
                                    "traceback": traceback.format_tb(tb),
                                    "linked_node": val,
                                },
                            }
                        ],
                        source_id,
                    )
                    continue
            else:
                error = self._check_literal(inputs, name, input_type, options, info, node_def)
                if error is not None:
                    errors.append(error)
                    continue

        if node_def.custom_validated:
            errors.extend(self._custom_validation(node_def, inputs))

        result: ValidateResult = (False, errors, unique_id) if errors or not valid else (True, [], unique_id)
        validated[unique_id] = result
        return result

    @staticmethod
    def _check_literal(
        inputs: dict[str, Any], name: str, input_type: Any, options: dict[str, Any], info: list[Any], node_def: NodeDef
    ) -> dict[str, Any] | None:
        val = inputs[name]
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = val["__value__"]
                inputs[name] = val
            if input_type == "INT":
                val = int(val)
            elif input_type == "FLOAT":
                val = float(val)
            elif input_type == "STRING":
                val = str(val)
            elif input_type == "BOOLEAN":
                val = bool(val)
            inputs[name] = val
        except Exception as ex:
            return {
                "type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {input_type} value",
                "details": f"{name}, {val}, {ex}",
                "extra_info": {
                    "input_name": name,
                    "input_config": info,
                    "received_value": val,
                    "exception_message": str(ex),
                },
            }
        if name in node_def.custom_validated:
            return None
        if "min" in options and val < options["min"]:
            return {
                "type": "value_smaller_than_min",
                "message": f"Value {val} smaller than min of {options['min']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": val},
            }
        if "max" in options and val > options["max"]:
            return {
                "type": "value_bigger_than_max",
                "message": f"Value {val} bigger than max of {options['max']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": val},
            }
        if isinstance(input_type, list) and val not in input_type:
            long_list = len(input_type) > 20
            list_info = f"(list of length {len(input_type)})" if long_list else str(input_type)
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{val}' not in {list_info}",
                "extra_info": {
                    "input_name": name,
                    "input_config": None if long_list else info,
                    "received_value": val,
                },
            }
        return None

    def _custom_validation(self, node_def: NodeDef, inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """LoadImage.VALIDATE_INPUTS: the named file must exist."""
        errors: list[dict[str, Any]] = []
        for name in node_def.custom_validated:
            value = inputs.get(name)
            if name not in inputs or isinstance(value, list):
                continue
            if not self.image_exists(str(value)):
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"{name} - Invalid image file: {value}",
                        "extra_info": {"input_name": name},
                    }
                )
        return errors
