"""``create_emulator_app`` also runs in-process (no websockets through httpx's ASGI transport)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from comfy.emulator import EmulatorConfig, create_emulator_app
from tests.comfy.helpers import png_bytes, restore_workflow


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    config = EmulatorConfig(root=tmp_path, service_time=0.01, models=("my-own-vae.safetensors",))
    app = create_emulator_app(config)
    async with app.router.lifespan_context(app):
        yield app


async def test_in_process_app_runs_a_prompt_with_a_configured_model_name(app, tmp_path):
    graph = restore_workflow()
    graph["39"]["inputs"]["vae_name"] = "my-own-vae.safetensors"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        uploaded = await client.post(
            "/upload/image", data={"subfolder": "restore"}, files={"image": ("input.png", png_bytes(), "image/png")}
        )
        accepted = await client.post("/prompt", json={"prompt": graph, "prompt_id": "in-process"})
        for _ in range(1000):  # poll the history like a client without a websocket
            history = (await client.get("/history/in-process")).json()
            if history:
                break
            await asyncio.sleep(0.01)

    assert uploaded.status_code == 200
    assert accepted.status_code == 200
    assert history["in-process"]["status"]["status_str"] == "success"
    assert (tmp_path / "input" / "restore" / "input.png").is_file()
    assert list((tmp_path / "output" / "restore").glob("output_*_.png"))
