"""Small raw-protocol helpers for the emulator tests: a background websocket reader and test inputs."""

import asyncio
import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websockets
from PIL import Image
from websockets.asyncio.client import ClientConnection

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "restore.json"
INPUT_NAME = "restore/input.png"  # what workflows/restore.json loads

Message = dict[str, Any]


def bundled_workflow() -> dict[str, Any]:
    """workflows/restore.json exactly as the backend submits it (1 MP, 20 steps)."""
    graph: dict[str, Any] = json.loads(WORKFLOW.read_text())
    return graph


def restore_workflow(
    *, steps: int = 4, prefix: str | None = None, image: str | None = None, megapixels: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """The bundled Kontext graph, made cheap (few steps, small image) and optionally re-targeted."""
    graph: dict[str, Any] = copy.deepcopy(json.loads(WORKFLOW.read_text()))
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "KSampler":
            inputs.update(steps=steps, seed=seed)
        elif node["class_type"] == "ImageScaleToTotalPixels":
            inputs["megapixels"] = megapixels
        elif node["class_type"] == "SaveImage" and prefix is not None:
            inputs["filename_prefix"] = prefix
        elif node["class_type"] == "LoadImage" and image is not None:
            inputs["image"] = image
    return graph


def node_id_of(graph: dict[str, Any], class_type: str) -> str:
    return next(node_id for node_id, node in graph.items() if node["class_type"] == class_type)


def png_bytes(size: tuple[int, int] = (96, 72), color: tuple[int, int, int] = (140, 110, 80)) -> bytes:
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 7):  # some structure, so the "restoration" has something to work on
        image.putpixel((x, x % size[1]), (250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    name: str = "input.png",
    data: bytes | None = None,
    subfolder: str = "restore",
    overwrite: bool = True,
) -> httpx.Response:
    form = {"subfolder": subfolder, "type": "input", "overwrite": "true" if overwrite else "false"}
    files = {"image": (name, data if data is not None else png_bytes(), "image/png")}
    return await client.post("/upload/image", data=form, files=files)


class WsRecorder:
    """Reads one websocket in the background so tests can await messages instead of sleeping."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[str | bytes] = []
        self.closed = asyncio.Event()
        self.error: websockets.ConnectionClosed | None = None  # how the connection ended, if abnormally
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, *, max_size: int | None = 2**20, feature_flags: bool = False) -> "WsRecorder":
        connection = await websockets.connect(url, max_size=max_size)
        if feature_flags:
            await connection.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        return cls(connection)

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                self.frames.append(frame)
                self._changed.set()
        except websockets.ConnectionClosed as closed:
            self.error = closed
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def messages(self) -> list[Message]:
        return [json.loads(f) for f in self.frames if isinstance(f, str)]

    @property
    def binary_frames(self) -> list[bytes]:
        return [f for f in self.frames if isinstance(f, bytes)]

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    async def wait_for(self, predicate: Callable[[Message], bool], wait_s: float = 10.0) -> Message:
        """The first text message (since connect) matching ``predicate``."""
        async with asyncio.timeout(wait_s):
            while True:
                self._changed.clear()
                for message in self.messages:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise AssertionError(f"socket closed without a matching message; got {self.types()}")
                await self._changed.wait()

    async def wait_for_type(self, kind: str, wait_s: float = 10.0, **data: Any) -> Message:
        def matches(m: Message) -> bool:
            return m["type"] == kind and all(m["data"].get(k) == v for k, v in data.items())

        return await self.wait_for(matches, wait_s)

    async def wait_done(self, prompt_id: str, wait_s: float = 10.0) -> list[Message]:
        """All messages up to ``executing {node: null}`` of ``prompt_id`` (the completion signal)."""
        await self.wait_for_type("executing", wait_s, node=None, prompt_id=prompt_id)
        return self.messages

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
