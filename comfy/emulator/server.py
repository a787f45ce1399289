"""HTTP and websocket routes (ComfyUI's, each also under ``/api``) plus the ``/_emulator`` control API."""

import asyncio
import json
import logging
import mimetypes
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import wraps
from ipaddress import ip_address
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from comfy.emulator.config import COMFYUI_VERSION, EmulatorConfig
from comfy.emulator.emulator import Emulator, ServerTrouble
from comfy.emulator.faults import FaultSpecError, parse_faults
from comfy.emulator.files import UploadRejected, resolve_view, store_upload
from comfy.emulator.hub import SERVER_FEATURES
from comfy.emulator.nodes import node_object_info, object_info

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"
_FORCED_DOWNLOAD = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}


def json_response(data: Any, status: int = 200) -> Response:
    """Like aiohttp's ``json_response``: ``json.dumps`` default separators, ``charset=utf-8``."""
    return Response(json.dumps(data), status_code=status, media_type="application/json; charset=utf-8")


def empty(status: int = 200) -> Response:
    return Response(status_code=status)


def trouble() -> Response:
    return Response(TROUBLE, status_code=500, media_type="text/plain", headers={"Connection": "close"})


def aiohttp_errors(handler: Handler) -> Handler:
    """An exception in a handler becomes aiohttp's plain-text 500, as on the real server."""

    @wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ServerTrouble as ex:
            logger.error(
                "emulator.http_500", extra={"method": request.method, "path": request.url.path, "error": str(ex)}
            )
            return trouble()
        except Exception:
            logger.exception("emulator.http_500", extra={"method": request.method, "path": request.url.path})
            return trouble()

    return wrapped


def emulator_of(request: Request | WebSocket) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


# --- ComfyUI routes -----------------------------------------------------------------------------------


async def post_prompt(request: Request) -> Response:
    body = json.loads(await request.body())
    status, response = emulator_of(request).submit(body)
    return json_response(response, status)


async def get_prompt(request: Request) -> Response:
    return json_response(emulator_of(request).queue_info())


async def get_queue(request: Request) -> Response:
    return json_response(emulator_of(request).queue.queue_json())


async def post_queue(request: Request) -> Response:
    emulator = emulator_of(request)
    data = json.loads(await request.body())
    if data.get("clear"):
        emulator.queue.wipe()
    if "delete" in data:
        for prompt_id in data["delete"]:
            emulator.recorder.queue_deletes.append(prompt_id)
            emulator.queue.delete(prompt_id)
    return empty()


async def post_interrupt(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        data = json.loads(await request.body())
    except ValueError:
        data = {}
    prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
    running = list(emulator.queue.running)
    applied = emulator.executor.request_interrupt(prompt_id)
    emulator.recorder.interrupts.append({"prompt_id": prompt_id, "running": running, "applied": applied})
    return empty()


async def get_history(request: Request) -> Response:
    query = request.query_params
    max_items = int(query["max_items"]) if "max_items" in query else None
    offset = int(query.get("offset", -1))
    return json_response(emulator_of(request).queue.get_history(max_items=max_items, offset=offset))


async def get_history_item(request: Request) -> Response:
    return json_response(emulator_of(request).queue.get_history(request.path_params["prompt_id"]))


async def post_history(request: Request) -> Response:
    queue = emulator_of(request).queue
    data = json.loads(await request.body())
    if data.get("clear"):
        queue.wipe_history()
    if "delete" in data:
        for prompt_id in data["delete"]:
            queue.delete_history(prompt_id)
    return empty()


async def upload_image(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        form = await request.form()
    except Exception:  # not a multipart/urlencoded body: aiohttp finds no "image" field
        return empty(400)
    image = form.get("image")
    if not isinstance(image, UploadFile) or not image.filename:
        return empty(400)
    overwrite = form.get("overwrite") in ("true", "1")
    kind = str(form.get("type") or "input")
    subfolder = str(form.get("subfolder", ""))
    content = await image.read()
    try:
        name = await asyncio.to_thread(
            store_upload, emulator.folders, kind, image.filename, content, subfolder, overwrite
        )
    except UploadRejected:
        return empty(400)
    path = f"{subfolder}/{name}" if subfolder else name
    emulator.recorder.uploads.append({"path": path, "type": kind, "bytes": len(content), "overwrite": overwrite})
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


async def view(request: Request) -> Response:
    query = request.query_params
    if "filename" not in query:
        return empty(404)
    found = resolve_view(
        emulator_of(request).folders, query["filename"], query.get("subfolder"), query.get("type", "output")
    )
    if isinstance(found, int):
        return empty(found)
    content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    if content_type in _FORCED_DOWNLOAD:
        content_type = "application/octet-stream"
    return FileResponse(found, media_type=content_type, headers={"Content-Disposition": f'filename="{found.name}"'})


def _ram() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0, 0


async def system_stats(request: Request) -> Response:
    ram_total, ram_free = _ram()
    return json_response(
        {
            "system": {
                "os": os.name,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": COMFYUI_VERSION,
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "none (ComfyUI emulator)",
                "embedded_python": False,
                "argv": sys.argv,
                "emulator": True,
            },
            "devices": [
                {
                    "name": "cpu",
                    "type": "cpu",
                    "index": None,
                    "vram_total": ram_total,
                    "vram_free": ram_free,
                    "torch_vram_total": ram_total,
                    "torch_vram_free": ram_free,
                }
            ],
        }
    )


async def get_object_info(request: Request) -> Response:
    emulator = emulator_of(request)
    return json_response(object_info(emulator.defs, emulator.folders.input_files()))


async def get_object_info_node(request: Request) -> Response:
    emulator = emulator_of(request)
    name = request.path_params["node_class"]
    node = emulator.defs.get(name)
    if node is None:
        return json_response({})
    return json_response({name: node_object_info(node, emulator.folders.input_files())})


async def get_features(request: Request) -> Response:
    return json_response(dict(SERVER_FEATURES))


async def get_model_folders(request: Request) -> Response:
    return json_response(sorted(emulator_of(request).catalog.folders))


async def get_models(request: Request) -> Response:
    folder = request.path_params["folder"]
    catalog = emulator_of(request).catalog
    if folder not in catalog.folders:
        return empty(404)
    return json_response(catalog.names(folder))


async def websocket(socket: WebSocket) -> None:
    emulator = emulator_of(socket)
    await emulator.hub.serve(socket, socket.query_params.get("clientId", ""), emulator.queue_info)


# --- control API (not ComfyUI's) ---------------------------------------------------------------------


async def post_faults(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        faults = parse_faults(json.loads(await request.body() or b"{}"))
    except (ValueError, FaultSpecError) as ex:
        return json_response({"error": str(ex)}, 400)
    emulator.set_faults(faults)
    return json_response({"faults": faults.to_json()})


async def get_faults(request: Request) -> Response:
    return json_response({"faults": emulator_of(request).faults.to_json()})


async def post_reset(request: Request) -> Response:
    await emulator_of(request).reset()
    return json_response({"reset": True})


async def get_state(request: Request) -> Response:
    return json_response(emulator_of(request).snapshot())


_HTTP_ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/prompt", post_prompt, ["POST"]),
    ("/prompt", get_prompt, ["GET"]),
    ("/queue", get_queue, ["GET"]),
    ("/queue", post_queue, ["POST"]),
    ("/interrupt", post_interrupt, ["POST"]),
    ("/history", get_history, ["GET"]),
    ("/history", post_history, ["POST"]),
    ("/history/{prompt_id}", get_history_item, ["GET"]),
    ("/upload/image", upload_image, ["POST"]),
    ("/view", view, ["GET"]),
    ("/system_stats", system_stats, ["GET"]),
    ("/object_info", get_object_info, ["GET"]),
    ("/object_info/{node_class}", get_object_info_node, ["GET"]),
    ("/features", get_features, ["GET"]),
    ("/models", get_model_folders, ["GET"]),
    ("/models/{folder}", get_models, ["GET"]),
]

_CONTROL_ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/_emulator/faults", post_faults, ["POST"]),
    ("/_emulator/faults", get_faults, ["GET"]),
    ("/_emulator/reset", post_reset, ["POST"]),
    ("/_emulator/state", get_state, ["GET"]),
]


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for prefix in ("", "/api"):
        routes.append(WebSocketRoute(f"{prefix}/ws", websocket))
        routes.extend(Route(prefix + path, aiohttp_errors(h), methods=m) for path, h, m in _HTTP_ROUTES)
    routes.extend(Route(path, h, methods=m) for path, h, m in _CONTROL_ROUTES)
    return routes


class GuardMiddleware:
    """ComfyUI's transport rules: 403 when a loopback request's Origin differs from Host (fact 25),
    413 when a body is larger than the upload limit (fact 22)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if _origin_mismatch(headers.get("host"), headers.get("origin")):
                logger.warning("emulator.origin_mismatch", extra={"note": "host and origin differ; answered 403"})
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await Response(status_code=403)(scope, receive, send)
                return
            length = headers.get("content-length", "")
            if scope["type"] == "http" and length.isdigit() and int(length) > self.max_body:
                message = f"Maximum request body size {self.max_body} exceeded."
                await Response(message, status_code=413, media_type="text/plain")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _origin_mismatch(host: str | None, origin: str | None) -> bool:
    if not host or not origin:
        return False
    host_domain = host.lower()
    parsed = urllib.parse.urlparse(origin)
    origin_domain: str | None = parsed.netloc.lower()
    host_parsed = urllib.parse.urlsplit("//" + host_domain)
    if parsed.port is None:
        host_domain = host_parsed.hostname or ""
    if host_parsed.port is None:
        origin_domain = parsed.hostname
    return (
        _is_loopback(host_parsed.hostname)
        and bool(host_domain)
        and bool(origin_domain)
        and host_domain != origin_domain
    )


def create_emulator_app(config: EmulatorConfig) -> Starlette:
    """The emulator as an ASGI app; ``app.state.emulator`` is its :class:`Emulator`.

    The prompt worker and the websocket publisher start in the app's lifespan, so an in-process user
    must run the lifespan (uvicorn does; with httpx's ASGITransport, enter ``app.router.lifespan_context``).
    """
    emulator = Emulator(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.stop()

    app = Starlette(routes=_routes(), lifespan=lifespan)
    app.state.emulator = emulator
    app.add_middleware(GuardMiddleware, max_body=config.max_upload_size)
    return app
