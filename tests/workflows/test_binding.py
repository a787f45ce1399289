"""The workflow and its bindings are validated at start-up and bind a job's values into a fresh prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from settings import BUNDLED_WORKFLOW
from workflows.binding import MAX_SEED, WorkflowError, load_workflow

BINDINGS = BUNDLED_WORKFLOW.with_name("restore.bindings.json")


def write(tmp_path: Path, graph: object, bindings: object) -> tuple[Path, Path]:
    workflow, binding = tmp_path / "w.json", tmp_path / "w.bindings.json"
    workflow.write_text(json.dumps(graph))
    binding.write_text(json.dumps(bindings))
    return workflow, binding


def bundled() -> tuple[dict, dict]:
    return json.loads(BUNDLED_WORKFLOW.read_text()), json.loads(BINDINGS.read_text())


def test_bundled_workflow_loads_with_its_own_denoise_as_default() -> None:
    workflow = load_workflow(BUNDLED_WORKFLOW, BINDINGS)
    assert workflow.default_denoise == 1.0
    assert workflow.output_node == "136"


def test_build_binds_image_denoise_seed_megapixels_and_a_per_job_prefix() -> None:
    workflow = load_workflow(BUNDLED_WORKFLOW, BINDINGS)
    prompt = workflow.build(image_name="restore/slot-0.png", denoise=0.3, filename_prefix="restore/j1/restored", seed=7)
    assert prompt["41"]["inputs"]["image"] == "restore/slot-0.png"
    assert prompt["31"]["inputs"]["denoise"] == 0.3
    assert prompt["31"]["inputs"]["seed"] == 7
    assert prompt["42"]["inputs"]["megapixels"] == 1.0
    assert prompt["136"]["inputs"]["filename_prefix"] == "restore/j1/restored"


def test_build_draws_a_fresh_u64_seed_and_leaves_the_template_untouched() -> None:
    workflow = load_workflow(BUNDLED_WORKFLOW, BINDINGS)
    seeds = {workflow.build(image_name="a", denoise=1.0, filename_prefix="p")["31"]["inputs"]["seed"] for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    assert workflow.graph["41"]["inputs"]["image"] == "restore/input.png"


def test_binding_to_a_missing_node_stops_start_up(tmp_path: Path) -> None:
    graph, bindings = bundled()
    bindings["denoise"]["node"] = "999"
    with pytest.raises(WorkflowError, match="node '999'"):
        load_workflow(*write(tmp_path, graph, bindings))


def test_binding_to_a_missing_input_stops_start_up(tmp_path: Path) -> None:
    graph, bindings = bundled()
    bindings["seed"]["input"] = "noise_seed"
    with pytest.raises(WorkflowError, match="noise_seed"):
        load_workflow(*write(tmp_path, graph, bindings))


def test_a_required_binding_cannot_be_left_out(tmp_path: Path) -> None:
    graph, bindings = bundled()
    del bindings["output"]
    with pytest.raises(WorkflowError, match="output"):
        load_workflow(*write(tmp_path, graph, bindings))


def test_optional_bindings_may_be_left_out(tmp_path: Path) -> None:
    graph, bindings = bundled()
    del bindings["seed"], bindings["megapixels"]
    workflow = load_workflow(*write(tmp_path, graph, bindings))
    assert workflow.build(image_name="a", denoise=0.5, filename_prefix="p")["31"]["inputs"]["seed"] == 0


def test_a_ui_format_workflow_is_refused(tmp_path: Path) -> None:
    _, bindings = bundled()
    with pytest.raises(WorkflowError, match="API-format"):
        load_workflow(*write(tmp_path, {"nodes": [], "links": []}, bindings))


def test_an_output_node_without_filename_prefix_is_refused(tmp_path: Path) -> None:
    graph, bindings = bundled()
    bindings["output"]["node"] = "8"
    with pytest.raises(WorkflowError, match="filename_prefix"):
        load_workflow(*write(tmp_path, graph, bindings))


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    workflow, binding = write(tmp_path, {}, {})
    workflow.write_text("{not json")
    with pytest.raises(WorkflowError, match=str(workflow)):
        load_workflow(workflow, binding)
