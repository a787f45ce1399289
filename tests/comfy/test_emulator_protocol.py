"""The emulator speaks ComfyUI 0.3.64's protocol (/work/shared/comfyui-protocol.md), checked over raw
HTTP and websockets against the emulator subprocess. Each test states one behaviour of the real server
("fact N" refers to section 1 of the notes) or of the fault-injection API the backend's tests rely on.
"""

import asyncio
import io
import json
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from tests.comfy.helpers import (
    INPUT_NAME,
    Message,
    WsRecorder,
    bundled_workflow,
    node_id_of,
    png_bytes,
    restore_workflow,
    upload,
)
from tests.fixtures.comfy import ComfyEmulatorHandle

STATUS_KEYS = {"value", "max", "state", "node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id"}


@pytest.fixture
async def http(comfy: ComfyEmulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=comfy.url, timeout=10.0) as client:
        yield client


@pytest.fixture
async def uploaded(http: httpx.AsyncClient) -> str:
    """``restore/input.png`` exists in the input folder, as workflows/restore.json expects."""
    response = await upload(http, "input.png")
    assert response.status_code == 200
    return INPUT_NAME


@pytest.fixture
async def sockets() -> AsyncIterator[list[WsRecorder]]:
    """Websockets opened by a test, closed at its end."""
    opened: list[WsRecorder] = []
    yield opened
    for recorder in opened:
        await recorder.close()


async def connect(sockets: list[WsRecorder], comfy: ComfyEmulatorHandle, client_id: str, **kw: Any) -> WsRecorder:
    recorder = await WsRecorder.connect(comfy.ws_url_for(client_id), **kw)
    sockets.append(recorder)
    await recorder.wait_for_type("status")  # the connect-time status with our sid
    return recorder


async def submit(http: httpx.AsyncClient, graph: dict[str, Any], client_id: str | None, prompt_id: str) -> None:
    body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id}
    if client_id is not None:
        body["client_id"] = client_id
    response = await http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["node_errors"] == {}


async def run(
    http: httpx.AsyncClient, ws: WsRecorder, client_id: str, graph: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any], list[Message]]:
    """Submit ``graph`` (default: the restore workflow) and return (prompt_id, graph, messages until done)."""
    graph = graph if graph is not None else restore_workflow(prefix=f"restore/{uuid.uuid4().hex[:8]}")
    prompt_id = f"p-{uuid.uuid4().hex[:8]}"
    await submit(http, graph, client_id, prompt_id)
    return prompt_id, graph, await ws.wait_done(prompt_id)


def without_timestamp(message: Message) -> Message:
    data = {k: v for k, v in message["data"].items() if k != "timestamp"}
    return {"type": message["type"], "data": data}


def of_prompt(messages: list[Message], prompt_id: str) -> list[Message]:
    return [m for m in messages if m["data"].get("prompt_id") == prompt_id]


def status(remaining: int) -> Message:
    return {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}}


async def connections_settle(comfy: ComfyEmulatorHandle, client_id: str, count: int) -> dict[str, Any]:
    """Wait until the emulator has ``count`` open sockets for ``client_id`` (socket cleanup is asynchronous)."""
    for _ in range(500):
        state = await comfy.state()
        if state["ws_connections"].count(client_id) == count:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"{client_id} still has {state['ws_connections'].count(client_id)} sockets")


def small_graph(prefix: str, image: str = INPUT_NAME) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


# --- submitting (facts 1-7) ---------------------------------------------------------------------------


async def test_accepted_prompt_echoes_caller_prompt_id_and_number(comfy, http, uploaded):
    response = await http.post("/prompt", json={"prompt": restore_workflow(), "prompt_id": "caller-id-1"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.text == '{"prompt_id": "caller-id-1", "number": 0, "node_errors": {}}'


async def test_number_counts_every_post_including_rejected_ones(comfy, http, uploaded):
    bad = restore_workflow()
    bad["5"] = {"class_type": "RestoreFacesMagic", "inputs": {}}
    assert (await http.post("/prompt", json={"prompt": bad})).status_code == 400

    response = await http.post("/prompt", json={"prompt": restore_workflow()})

    assert response.json()["number"] == 1


async def test_unknown_class_type_is_rejected_as_invalid_prompt(comfy, http, uploaded):
    graph = restore_workflow()
    graph["5"] = {"class_type": "RestoreFacesMagic", "inputs": {"image": ["41", 0]}}

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.text == (
        '{"error": {"type": "invalid_prompt", "message": "Cannot execute because node RestoreFacesMagic does not '
        'exist.", "details": "Node ID \'#5\'", "extra_info": {}}, "node_errors": {}}'
    )


async def test_node_without_class_type_is_rejected_as_invalid_prompt(comfy, http, uploaded):
    graph = restore_workflow()
    del graph["42"]["class_type"]

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#42'",
            "extra_info": {},
        },
        "node_errors": {},
    }


async def test_missing_required_input_is_reported_per_node(comfy, http, uploaded):
    graph = restore_workflow()
    del graph["42"]["inputs"]["megapixels"]

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "42": {
                "errors": [
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": "megapixels",
                        "extra_info": {"input_name": "megapixels"},
                    }
                ],
                "dependent_outputs": ["136"],
                "class_type": "ImageScaleToTotalPixels",
            }
        },
    }


async def test_value_above_max_is_rejected_with_the_input_config(comfy, http, uploaded):
    graph = restore_workflow(megapixels=100.0)

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.text == (
        '{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", '
        '"details": "", "extra_info": {}}, "node_errors": {"42": {"errors": [{"type": "value_bigger_than_max", '
        '"message": "Value 100.0 bigger than max of 16.0", "details": "megapixels", "extra_info": {"input_name": '
        '"megapixels", "input_config": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}], '
        '"received_value": 100.0}}], "dependent_outputs": ["136"], "class_type": "ImageScaleToTotalPixels"}}}'
    )


async def test_ksampler_ranges_are_the_real_ones(comfy, http, uploaded):
    graph = restore_workflow(steps=0)
    graph["31"]["inputs"]["denoise"] = 1.5

    response = await http.post("/prompt", json={"prompt": graph})

    errors = response.json()["node_errors"]["31"]["errors"]
    assert [(e["type"], e["details"]) for e in errors] == [
        ("value_smaller_than_min", "steps"),
        ("value_bigger_than_max", "denoise"),
    ]
    assert errors[0]["message"] == "Value 0 smaller than min of 1"


async def test_link_to_a_missing_node_is_an_inner_validation_exception(comfy, http, uploaded):
    graph = restore_workflow()
    graph["31"]["inputs"]["model"] = ["99", 0]

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    error = response.json()["node_errors"]["31"]["errors"][0]
    assert error["type"] == "exception_during_inner_validation"
    assert error["details"] == "'99'"
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert isinstance(error["extra_info"]["traceback"], list)


async def test_loadimage_of_a_file_never_uploaded_fails_custom_validation(comfy, http):
    graph = restore_workflow(image="restore/does_not_exist.png")

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.json()["node_errors"]["41"] == {
        "errors": [
            {
                "type": "custom_validation_failed",
                "message": "Custom validation failed for node",
                "details": "image - Invalid image file: restore/does_not_exist.png",
                "extra_info": {"input_name": "image"},
            }
        ],
        "dependent_outputs": ["136"],
        "class_type": "LoadImage",
    }


async def test_unknown_model_file_is_not_in_list(comfy, http, uploaded):
    graph = restore_workflow()
    graph["39"]["inputs"]["vae_name"] = "missing_vae.safetensors"

    response = await http.post("/prompt", json={"prompt": graph})

    error = response.json()["node_errors"]["39"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == "vae_name: 'missing_vae.safetensors' not in ['ae.safetensors', 'pixel_space']"


async def test_v3_combo_values_are_not_validated(comfy, http, uploaded):
    graph = restore_workflow()
    graph["42"]["inputs"]["upscale_method"] = "superres"

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 200


async def test_one_invalid_output_of_two_gives_200_with_node_errors(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "partial")
    graph = small_graph("misc/partial_ok")
    graph["20"] = {
        "class_type": "ImageScaleToTotalPixels",
        "inputs": {"image": ["1", 0], "upscale_method": "lanczos", "megapixels": 99.0},
    }
    graph["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "misc/partial_bad"}}

    response = await http.post("/prompt", json={"prompt": graph, "client_id": "partial", "prompt_id": "partial-1"})

    assert response.status_code == 200
    assert response.json()["node_errors"]["20"]["dependent_outputs"] == ["21"]
    await ws.wait_done("partial-1")
    entry = await comfy.wait_for_history("partial-1")
    assert entry["prompt"][4] == ["9"]
    assert list(entry["outputs"]) == ["9"]


async def test_prompt_without_output_nodes_is_rejected(comfy, http, uploaded):
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": INPUT_NAME}}}

    response = await http.post("/prompt", json={"prompt": graph})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "prompt_no_outputs"


async def test_body_without_prompt_is_rejected_as_no_prompt(comfy, http):
    response = await http.post("/prompt", json={"client_id": "x"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        },
        "node_errors": {},
    }


async def test_malformed_json_gets_a_plain_text_500(comfy, http):
    response = await http.post("/prompt", content=b'{"prompt": {', headers={"content-type": "application/json"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["connection"] == "close"
    assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"


async def test_prompt_that_is_not_an_object_gets_a_plain_text_500(comfy, http):
    response = await http.post("/prompt", json={"prompt": "not a graph"})

    assert response.status_code == 500
    assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"


# --- websocket messages of a successful run (facts 8, 11-13) ---------------------------------------


async def test_successful_prompt_opens_and_closes_with_comfyui_frames(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "order")

    prompt_id, _, messages = await run(http, ws, "order", bundled_workflow())

    assert messages[0] == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "order"},
    }
    assert [without_timestamp(m) for m in messages[1:5]] == [
        status(1),
        status(1),
        {"type": "execution_start", "data": {"prompt_id": prompt_id}},
        {"type": "execution_cached", "data": {"nodes": [], "prompt_id": prompt_id}},
    ]
    assert isinstance(messages[3]["data"]["timestamp"], int)
    assert [without_timestamp(m) for m in messages[-3:]] == [
        {"type": "execution_success", "data": {"prompt_id": prompt_id}},
        status(0),
        {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}},
    ]


async def test_every_node_executes_once_in_topological_order(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "topo")

    prompt_id, graph, messages = await run(http, ws, "topo")

    executing = [m["data"] for m in messages if m["type"] == "executing" and m["data"]["node"] is not None]
    order = [d["node"] for d in executing]
    assert sorted(order) == sorted(graph)
    assert all(d == {"node": d["node"], "display_node": d["node"], "prompt_id": prompt_id} for d in executing)
    position = {node_id: i for i, node_id in enumerate(order)}
    for node_id, node in graph.items():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert position[value[0]] < position[node_id], f"{value[0]} must run before {node_id}"
    assert order.index("39") < order.index("41"), "loaders run before LoadImage, as on the real server"


async def test_each_node_is_announced_by_a_running_progress_state(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "pstate")

    prompt_id, _, messages = await run(http, ws, "pstate")

    for index, message in enumerate(messages):
        if message["type"] == "executing" and message["data"]["node"] is not None:
            node_id = message["data"]["node"]
            before = messages[index - 1]
            assert before["type"] == "progress_state"
            assert before["data"]["prompt_id"] == prompt_id
            entry = before["data"]["nodes"][node_id]
            assert set(entry) == STATUS_KEYS
            assert (entry["state"], entry["value"], entry["max"]) == ("running", 0.0, 1.0)
            assert entry["parent_node_id"] is None
    final = [m for m in messages if m["type"] == "progress_state"][-1]["data"]["nodes"]
    assert {entry["state"] for entry in final.values()} == {"finished"}


async def test_ksampler_reports_progress_from_1_to_steps(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "steps")
    graph = restore_workflow(steps=5, prefix=f"restore/{uuid.uuid4().hex[:8]}")

    prompt_id, _, messages = await run(http, ws, "steps", graph)

    progress = [m for m in messages if m["type"] == "progress"]
    assert [m["data"] for m in progress] == [
        {"value": step, "max": 5, "prompt_id": prompt_id, "node": "31"} for step in range(1, 6)
    ]
    states = [
        m["data"]["nodes"]["31"] for m in messages if m["type"] == "progress_state" and "31" in m["data"]["nodes"]
    ]
    assert next((s["value"], s["max"]) for s in states if s["state"] == "finished") == (5, 5)


async def test_saveimage_result_comes_before_its_finished_progress_state(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "executed")
    prefix = f"restore/{uuid.uuid4().hex[:8]}"

    prompt_id, graph, messages = await run(http, ws, "executed", restore_workflow(prefix=prefix))

    save = node_id_of(graph, "SaveImage")
    index = next(i for i, m in enumerate(messages) if m["type"] == "executed")
    assert messages[index]["data"] == {
        "node": save,
        "display_node": save,
        "output": {"images": [{"filename": f"{prefix[8:]}_00001_.png", "subfolder": "restore", "type": "output"}]},
        "prompt_id": prompt_id,
    }
    after = messages[index + 1]
    assert after["type"] == "progress_state"
    assert after["data"]["nodes"][save]["state"] == "finished"
    assert messages[index + 2]["type"] == "execution_success"


# --- history and files (facts 12, 15, 20-24) --------------------------------------------------------


async def test_history_is_empty_until_the_prompt_completes(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang")
    ws = await connect(sockets, comfy, "early")
    await submit(http, restore_workflow(), "early", "early-1")
    await ws.wait_for_type("progress", prompt_id="early-1")

    response = await http.get("/history/early-1")

    assert response.status_code == 200
    assert response.text == "{}"
    queue = (await http.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == ["early-1"]


async def test_history_entry_after_completion_has_the_documented_shape(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "hist")
    graph = restore_workflow(prefix="restore/hist")

    prompt_id, _, messages = await run(http, ws, "hist", graph)
    entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]

    assert list(entry) == ["prompt", "outputs", "status", "meta"]
    assert entry["prompt"] == [0, prompt_id, graph, {"client_id": "hist"}, ["136"]]
    filename = next(m for m in messages if m["type"] == "executed")["data"]["output"]["images"][0]["filename"]
    assert entry["outputs"] == {"136": {"images": [{"filename": filename, "subfolder": "restore", "type": "output"}]}}
    assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("success", True)
    assert [event for event, _ in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["meta"] == {
        "136": {"node_id": "136", "display_node": "136", "parent_node": None, "real_node_id": "136"}
    }


async def test_history_lists_the_newest_entries_with_max_items(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "many")
    first, _, _ = await run(http, ws, "many", small_graph("misc/many"))
    second, _, _ = await run(http, ws, "many", small_graph("misc/many"))

    assert list((await http.get("/history", params={"max_items": 1})).json()) == [second]
    assert list((await http.get("/history")).json()) == [first, second]


async def test_history_items_can_be_deleted_and_cleared(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "forget")
    first, _, _ = await run(http, ws, "forget", small_graph("misc/forget"))
    second, _, _ = await run(http, ws, "forget", small_graph("misc/forget"))

    deleted = await http.post("/history", json={"delete": [first]})
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert list((await http.get("/history")).json()) == [second]
    await http.post("/history", json={"clear": True})
    assert (await http.get("/history")).json() == {}


async def test_view_serves_the_output_png_with_the_prompt_embedded(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "view")
    _, graph, messages = await run(http, ws, "view", bundled_workflow())
    image = next(m for m in messages if m["type"] == "executed")["data"]["output"]["images"][0]

    response = await http.get("/view", params=image)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == f'filename="{image["filename"]}"'
    png = Image.open(io.BytesIO(response.content))
    assert json.loads(png.text["prompt"]) == graph
    assert png.size == (1176, 880)  # 96x72 at 1.0 MP is 1182x887, then the VAE crop to multiples of 8


async def test_view_of_a_missing_file_is_404_and_dotdot_is_400(comfy, http):
    missing = await http.get("/view", params={"filename": "nope.png", "subfolder": "", "type": "output"})
    escaping = await http.get("/view", params={"filename": "../secret.png", "type": "output"})

    assert (missing.status_code, missing.content) == (404, b"")
    assert (escaping.status_code, escaping.content) == (400, b"")


async def test_identical_resubmission_is_served_from_cache_with_the_old_file(comfy, http, uploaded, sockets):
    ws = await connect(sockets, comfy, "cache")
    graph = restore_workflow(prefix=f"restore/{uuid.uuid4().hex[:8]}")
    _, _, first = await run(http, ws, "cache", graph)
    first_output = next(m for m in first if m["type"] == "executed")["data"]["output"]

    prompt_id, _, messages = await run(http, ws, "cache", graph)

    mine = of_prompt(messages, prompt_id)
    assert sorted(next(m for m in mine if m["type"] == "execution_cached")["data"]["nodes"]) == sorted(graph)
    assert [m["data"]["node"] for m in mine if m["type"] == "executing"] == [None]
    assert next(m for m in mine if m["type"] == "executed")["data"]["output"] == first_output
    replay = [m for m in mine if m["type"] == "progress_state"][-1]["data"]["nodes"]["136"]
    assert (replay["state"], replay["value"], replay["max"]) == ("finished", 1, 1)


async def test_upload_reuses_identical_bytes_and_renames_different_ones(comfy, http):
    folder = f"up-{uuid.uuid4().hex[:6]}"

    first = await upload(http, "photo.png", png_bytes(color=(1, 2, 3)), subfolder=folder, overwrite=False)
    same = await upload(http, "photo.png", png_bytes(color=(1, 2, 3)), subfolder=folder, overwrite=False)
    different = await upload(http, "photo.png", png_bytes(color=(9, 9, 9)), subfolder=folder, overwrite=False)

    assert first.json() == {"name": "photo.png", "subfolder": folder, "type": "input"}
    assert same.json()["name"] == "photo.png"
    assert different.json()["name"] == "photo (1).png"


async def test_upload_without_image_or_escaping_the_folder_is_400(comfy, http):
    no_image = await http.post("/upload/image", data={"subfolder": "restore"})
    escaping = await upload(http, "x.png", subfolder="../../outside")

    assert (no_image.status_code, no_image.content) == (400, b"")
    assert (escaping.status_code, escaping.content) == (400, b"")


async def test_routes_also_answer_under_api(comfy, http):
    queue = await http.get("/api/queue")
    info = await http.get("/api/object_info/KSampler")

    assert queue.json() == {"queue_running": [], "queue_pending": []}
    seed = info.json()["KSampler"]["input"]["required"]["seed"]
    assert seed[1]["max"] == 18446744073709551615


# --- failures, interrupts and the queue (facts 18, 19) ----------------------------------------------


async def test_execution_error_fault_fails_the_named_node(comfy, http, uploaded, sockets):
    await comfy.set_faults(
        mode="execution_error", node="31", exception_type="torch.OutOfMemoryError", message="CUDA out of memory"
    )
    ws = await connect(sockets, comfy, "oom")

    prompt_id, _, messages = await run(http, ws, "oom")

    assert [m["type"] for m in messages[-4:]] == ["executing", "execution_error", "status", "executing"]
    assert messages[-4]["data"]["node"] == "31"
    error = messages[-3]["data"]
    assert list(error) == [
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    ]
    assert (error["node_id"], error["node_type"]) == ("31", "KSampler")
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"].startswith("CUDA out of memory\n")
    assert "31" not in error["executed"]
    assert "37" in error["executed"]
    assert error["current_inputs"]["steps"] == [4]
    entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"]) == ("error", False, {})
    assert entry["status"]["messages"][-1][0] == "execution_error"


async def test_corrupt_upload_fails_at_run_time_in_loadimage(comfy, http, sockets):
    await upload(http, "not_an_image.png", b"this is not a png", subfolder="restore")
    ws = await connect(sockets, comfy, "corrupt")

    _, _, messages = await run(http, ws, "corrupt", restore_workflow(image="restore/not_an_image.png"))

    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert (error["node_type"], error["exception_type"]) == ("LoadImage", "PIL.UnidentifiedImageError")
    assert error["exception_message"].startswith("cannot identify image file ")
    assert error["current_inputs"] == {"image": ["restore/not_an_image.png"]}


async def test_interrupt_stops_a_hanging_sampler_at_the_next_step(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang")
    ws = await connect(sockets, comfy, "int")
    await submit(http, restore_workflow(steps=4), "int", "int-1")
    await ws.wait_for_type("progress", value=3, prompt_id="int-1")

    response = await http.post("/interrupt", json={"prompt_id": "int-1"})
    messages = await ws.wait_done("int-1")

    assert (response.status_code, response.content) == (200, b"")
    assert [m["type"] for m in messages[-3:]] == ["execution_interrupted", "status", "executing"]
    interrupted = messages[-3]["data"]
    assert list(interrupted) == ["prompt_id", "node_id", "node_type", "executed", "timestamp"]
    assert (interrupted["node_id"], interrupted["node_type"]) == ("31", "KSampler")
    entry = (await http.get("/history/int-1")).json()["int-1"]
    assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert (await comfy.state())["interrupts"] == [{"prompt_id": "int-1", "running": ["int-1"], "applied": True}]


async def test_interrupt_for_another_prompt_id_is_a_no_op(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang")
    ws = await connect(sockets, comfy, "noop")
    await submit(http, restore_workflow(steps=3), "noop", "noop-1")
    await ws.wait_for_type("progress", prompt_id="noop-1")

    await http.post("/interrupt", json={"prompt_id": "someone-else"})
    await http.post("/interrupt")  # a global interrupt does stop it
    messages = await ws.wait_done("noop-1")

    assert [m["type"] for m in messages].count("execution_interrupted") == 1
    assert [i["applied"] for i in (await comfy.state())["interrupts"]] == [False, True]


async def test_an_interrupt_while_nothing_runs_does_not_stop_the_next_prompt(comfy, http, uploaded, sockets):
    """ComfyUI clears the interrupt flag when a prompt starts (fact 19: pending prompts then run normally)."""
    ws = await connect(sockets, comfy, "idle")
    await http.post("/interrupt")
    await http.post("/interrupt", json={"prompt_id": "not-yet-queued"})

    prompt_id, _, messages = await run(http, ws, "idle")

    assert "execution_success" in [m["type"] for m in of_prompt(messages, prompt_id)]
    assert [i["applied"] for i in (await comfy.state())["interrupts"]] == [True, False]


async def test_an_interrupted_prompts_successor_runs_normally(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang", times=1)
    ws = await connect(sockets, comfy, "next")
    await submit(http, restore_workflow(steps=3), "next", "stopped-1")
    await ws.wait_for_type("progress", prompt_id="stopped-1")
    await submit(http, restore_workflow(steps=3, prefix="restore/next"), "next", "after-1")

    await http.post("/interrupt", json={"prompt_id": "stopped-1"})
    messages = await ws.wait_done("after-1")

    assert "execution_interrupted" in [m["type"] for m in of_prompt(messages, "stopped-1")]
    assert "execution_success" in [m["type"] for m in of_prompt(messages, "after-1")]


async def test_deleting_a_pending_prompt_removes_it_for_good(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang")
    ws = await connect(sockets, comfy, "del")
    await submit(http, restore_workflow(), "del", "running-1")
    await ws.wait_for_type("progress", prompt_id="running-1")
    await submit(http, restore_workflow(), "del", "pending-1")
    queue = (await http.get("/queue")).json()
    assert [item[1] for item in queue["queue_pending"]] == ["pending-1"]

    deleted = await http.post("/queue", json={"delete": ["pending-1", "running-1"]})

    assert (deleted.status_code, deleted.content) == (200, b"")
    queue = (await http.get("/queue")).json()
    assert queue["queue_pending"] == []
    assert [item[1] for item in queue["queue_running"]] == ["running-1"]
    await http.post("/interrupt")
    await ws.wait_done("running-1")
    assert (await http.get("/history/pending-1")).json() == {}
    assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}


# --- routing (facts 9, 10) ----------------------------------------------------------------------------


async def test_per_prompt_events_go_only_to_the_prompts_client(comfy, http, uploaded, sockets):
    alice = await connect(sockets, comfy, "alice")
    bob = await connect(sockets, comfy, "bob")

    alice_prompt, _, _ = await run(http, alice, "alice", small_graph("misc/alice"))
    bob_prompt, _, _ = await run(http, bob, "bob", small_graph("misc/bob"))  # ordered after alice's frames

    assert of_prompt(bob.messages, alice_prompt) == []
    assert of_prompt(bob.messages, bob_prompt) != []
    assert of_prompt(alice.messages, bob_prompt) == []
    assert status(0) in alice.messages  # status is broadcast to everyone


async def test_a_second_socket_with_the_same_client_id_steals_the_routing(comfy, http, uploaded, sockets):
    old = await connect(sockets, comfy, "carol")
    new = await connect(sockets, comfy, "carol")

    await run(http, new, "carol", small_graph("misc/carol"))

    assert old.types() == ["status"]
    assert not old.closed.is_set()
    state = await comfy.state()
    assert state["ws_clients"].count("carol") == 1
    assert state["ws_connections"].count("carol") == 2


async def test_closing_the_stolen_socket_unroutes_the_new_one_too(comfy, http, sockets):
    """ComfyUI's handler pops the client id when *any* socket of that id closes (server.py)."""
    old = await connect(sockets, comfy, "frank")
    await connect(sockets, comfy, "frank")

    await old.close()
    state = await connections_settle(comfy, "frank", 1)

    assert "frank" not in state["ws_clients"]


async def test_reconnecting_mid_run_replays_executing_without_prompt_id(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="hang")
    first = await connect(sockets, comfy, "dave")
    await submit(http, restore_workflow(), "dave", "dave-1")
    await first.wait_for_type("progress", prompt_id="dave-1")
    await first.close()
    await connections_settle(comfy, "dave", 0)  # else the old handler's cleanup would unroute the new socket

    second = await connect(sockets, comfy, "dave")
    await second.wait_for_type("executing")

    assert second.messages[:2] == [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "dave"}},
        {"type": "executing", "data": {"node": "31"}},
    ]
    await http.post("/interrupt")
    await second.wait_done("dave-1")  # live events continue on the new socket


async def test_prompt_without_client_id_broadcasts_only_progress_state(comfy, http, uploaded, sockets):
    eve = await connect(sockets, comfy, "eve")

    await submit(http, small_graph("misc/anon"), None, "anon-1")
    await eve.wait_for(
        lambda m: m["type"] == "progress_state" and m["data"]["nodes"].get("9", {}).get("state") == "finished"
    )
    await eve.wait_for(lambda m: m == status(0))

    assert set(eve.types()) == {"status", "progress_state"}


# --- fault injection for the backend's tests --------------------------------------------------------


async def test_silent_socket_runs_the_prompt_without_any_frame(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="silent_socket", times=1)
    ws = await connect(sockets, comfy, "mute")

    await submit(http, small_graph("misc/mute"), "mute", "mute-1")
    entry = await comfy.wait_for_history("mute-1")
    await run(http, ws, "mute", small_graph("misc/mute"))  # frames are delivered in order

    assert entry["status"]["status_str"] == "success"
    assert of_prompt(ws.messages, "mute-1") == []
    assert ws.messages[1] == status(1)  # the first frame after connect belongs to the sentinel
    assert not ws.closed.is_set()


async def test_die_kills_the_process_like_a_crashed_comfyui(comfy, http, uploaded, sockets):
    await comfy.set_faults(mode="die", node="31")
    ws = await connect(sockets, comfy, "doomed")
    await submit(http, restore_workflow(), "doomed", "doomed-1")

    await ws.wait_for_type("executing", node="31")
    await ws.closed.wait()

    assert ws.close_code == 1006
    assert comfy.wait_dead() == -9
    async with httpx.AsyncClient(base_url=comfy.url) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get("/queue")
    with pytest.raises(ConnectionRefusedError):
        await websockets.connect(comfy.ws_url_for("doomed"))
    comfy.restart()
    async with httpx.AsyncClient(base_url=comfy.url) as fresh:
        assert (await fresh.get("/history/doomed-1")).json() == {}


async def test_large_binary_frame_exceeds_the_default_websocket_limit(comfy, http, uploaded, sockets):
    await comfy.set_faults(large_binary_frame=True)
    ws = await connect(sockets, comfy, "big", max_size=None)

    await run(http, ws, "big", small_graph("misc/big"))

    (frame,) = ws.binary_frames
    assert len(frame) > 1 << 20
    assert struct.unpack(">II", frame[:8]) == (1, 2)  # event 1 PREVIEW_IMAGE, format 2 PNG
    assert frame[8:16] == b"\x89PNG\r\n\x1a\n"


async def test_large_binary_frame_kills_a_client_with_the_default_limit(comfy, http, uploaded, sockets):
    await comfy.set_faults(large_binary_frame=True)
    ws = await connect(sockets, comfy, "small")  # websockets' default max_size: 1 MiB

    await submit(http, small_graph("misc/small"), "small", "small-1")
    await ws.closed.wait()

    assert ws.error is not None
    assert ws.error.sent is not None
    assert ws.error.sent.code == 1009  # "message too big"


async def test_previews_are_event_1_jpegs_by_default(comfy, http, uploaded, sockets):
    await comfy.set_faults(preview=True)
    ws = await connect(sockets, comfy, "legacy")

    await run(http, ws, "legacy", restore_workflow(steps=3, prefix="restore/legacy"))

    assert [struct.unpack(">II", f[:8]) for f in ws.binary_frames] == [(1, 1)] * 3
    assert all(f[8:10] == b"\xff\xd8" for f in ws.binary_frames)


async def test_feature_flags_handshake_switches_previews_to_event_4(comfy, http, uploaded, sockets):
    await comfy.set_faults(preview=True)
    ws = await connect(sockets, comfy, "meta", feature_flags=True)
    reply = await ws.wait_for_type("feature_flags")

    prompt_id, _, _ = await run(http, ws, "meta", restore_workflow(steps=2, prefix="restore/meta"))

    assert reply["data"] == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    assert len(ws.binary_frames) == 2
    for frame in ws.binary_frames:
        event, length = struct.unpack(">II", frame[:8])
        metadata = json.loads(frame[8 : 8 + length])
        assert event == 4
        assert metadata == {
            "node_id": "31",
            "prompt_id": prompt_id,
            "display_node_id": "31",
            "parent_node_id": None,
            "real_node_id": "31",
            "image_type": "image/jpeg",
        }
        assert frame[8 + length : 10 + length] == b"\xff\xd8"


async def test_service_time_is_spread_over_the_sampler_steps(comfy, http, uploaded, sockets):
    await comfy.set_faults(service_time=0.3)
    ws = await connect(sockets, comfy, "slow")

    _, _, messages = await run(http, ws, "slow", restore_workflow(steps=3, prefix="restore/slow"))

    sampler = [m for m in messages if m["type"] in ("executing", "progress") and m["data"].get("node") == "31"]
    assert [m["type"] for m in sampler] == ["executing", "progress", "progress", "progress"]
    started = next(m for m in messages if m["type"] == "execution_start")["data"]["timestamp"]
    finished = next(m for m in messages if m["type"] == "execution_success")["data"]["timestamp"]
    assert finished - started >= 300


async def test_state_reports_what_the_client_did(comfy, http, uploaded, sockets):
    await connect(sockets, comfy, "watcher")
    body = {"prompt": restore_workflow(), "client_id": "watcher", "prompt_id": "seen-1"}
    await http.post("/prompt", json=body)

    state = await comfy.state()

    assert state["prompts"][0]["body"] == body
    assert (state["prompts"][0]["prompt_id"], state["prompts"][0]["client_id"]) == ("seen-1", "watcher")
    assert state["uploads"] == {"count": 1, "names": [INPUT_NAME]}
    assert "watcher" in state["ws_clients"]


async def test_unknown_fault_modes_are_refused(comfy, http):
    response = await http.post("/_emulator/faults", json={"mode": "explode"})

    assert response.status_code == 400
    assert "explode" in response.json()["error"]
