"""The client of one ComfyUI server: HTTP calls plus ONE long-lived websocket (per worker and server).

The websocket (`/ws?clientId=<client_id>`) is opened once by `start()` and reconnected with the
same id whenever it drops, because a second socket with the same id silently steals the routing.
Frames for a prompt are routed to whoever `watch()`es its id. `wait()` settles a prompt from the
socket when it can and from `/history/{id}` when it must: after `executing {node: null}` (the only
safe moment to read history), when the socket has been silent for `poll_interval`, or when it
dropped. A prompt that is in neither queue nor history was lost by a ComfyUI restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from comfy.errors import (
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyLost,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnavailable,
    ComfyUnreachable,
)
from comfy.messages import (
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    Message,
    describe_rejection,
    parse_message,
)

log = logging.getLogger("restore.comfy")

# Seconds of silence on the socket before the history is polled instead.
POLL_INTERVAL = 2.0
# Reconnect backoff bounds: quick to notice a restarted server, gentle on a dead one.
RECONNECT_MIN_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0
# No frame at all for this long while one of our prompts runs: the socket is presumed stuck (the
# most reported failure of ComfyUI clients) and is reopened with the same client id.
WATCHDOG_SECONDS = 30.0
# How long an unreachable server is waited for during a run before the job fails.
OUTAGE_GRACE_SECONDS = 10.0
# Keepalive pings detect half-open connections that never deliver a close frame.
WS_PING_INTERVAL = 20.0
WS_OPEN_TIMEOUT = 5.0
# A health check must not hang on a server that accepts connections but stopped answering.
PING_TIMEOUT = httpx.Timeout(3.0, connect=2.0)


@dataclass(frozen=True)
class Disconnected:
    """Marker put into every watcher's queue when the socket drops."""


@dataclass(frozen=True)
class OutputImage:
    filename: str
    subfolder: str
    type: str


class Withdrawal(StrEnum):
    """What `ComfyClient.cancel` did to a prompt."""

    DELETED = "deleted"  # it was waiting in ComfyUI's queue and was removed from it
    INTERRUPTED = "interrupted"  # it was running: ComfyUI stops it at its next interrupt check
    ABSENT = "absent"  # neither waiting nor running (finished, or never arrived): nothing done


Event = Message | Disconnected
ProgressCallback = Callable[[Message], None]


class ComfyClient:
    def __init__(
        self,
        *,
        base_url: str,
        http: httpx.AsyncClient,
        client_id: str,
        poll_interval: float = POLL_INTERVAL,
        watchdog: float = WATCHDOG_SECONDS,
        outage_grace: float = OUTAGE_GRACE_SECONDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.poll_interval = poll_interval
        self.watchdog = watchdog
        self.outage_grace = outage_grace
        self._http = http
        self._watchers: dict[str, asyncio.Queue[Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self._ws_url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={client_id}"

    # -- websocket ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the socket listener (idempotent); it reconnects by itself until `close()`."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name=f"comfy-ws-{self.client_id}")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener])
            self._listener = None
        self.connected.clear()

    async def _listen(self) -> None:
        delay = RECONNECT_MIN_DELAY
        while True:
            try:
                async with connect(
                    self._ws_url,
                    max_size=None,  # SaveImageWebsocket frames are whole PNGs (> 1 MiB)
                    open_timeout=WS_OPEN_TIMEOUT,
                    ping_interval=WS_PING_INTERVAL,
                ) as ws:
                    self.connected.set()
                    delay = RECONNECT_MIN_DELAY
                    log.info("restore.comfy.ws_connected", extra={"client_id": self.client_id})
                    while True:
                        try:
                            # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancellation.
                            async with asyncio.timeout(self.watchdog):
                                frame = await ws.recv()
                        except TimeoutError:
                            if not self._watchers:
                                continue  # idle and quiet: nothing to worry about
                            log.warning(
                                "restore.comfy.ws_silent",
                                extra={"client_id": self.client_id, "seconds": self.watchdog, "note": "reconnecting"},
                            )
                            break
                        if isinstance(frame, str):
                            self._dispatch(frame)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                log.debug("restore.comfy.ws_error", extra={"client_id": self.client_id, "error": repr(exc)})
            if self.connected.is_set():
                log.warning("restore.comfy.ws_disconnected", extra={"client_id": self.client_id})
            self.connected.clear()
            for queue in self._watchers.values():
                queue.put_nowait(Disconnected())
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _dispatch(self, frame: str) -> None:
        message = parse_message(frame)
        prompt_id = getattr(message, "prompt_id", None)
        if message is None or prompt_id is None:
            return
        queue = self._watchers.get(prompt_id)
        if queue is not None:
            queue.put_nowait(message)

    @contextlib.asynccontextmanager
    async def watch(self, prompt_id: str) -> AsyncIterator[None]:
        """Route this prompt's frames to `wait()`; enter it BEFORE queueing the prompt."""
        self._watchers[prompt_id] = asyncio.Queue()
        try:
            yield
        finally:
            self._watchers.pop(prompt_id, None)

    async def wait(self, prompt_id: str, *, on_event: ProgressCallback | None = None) -> dict[str, Any]:
        """Wait inside `watch(prompt_id)` until the prompt is done; its history entry on success.

        Raises ComfyExecutionError / ComfyInterrupted for failed runs, ComfyLost when ComfyUI no
        longer knows the prompt, ComfyUnavailable when it cannot be reached.
        """
        queue = self._watchers[prompt_id]
        unreachable_since: float | None = None
        while True:
            event: Event | None = None  # None = silence: the socket may be stuck while ComfyUI works on
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    event = await queue.get()
            if isinstance(event, ExecutionError):
                raise ComfyExecutionError(
                    node_id=event.node_id, node_type=event.node_type, message=_short(event.exception_message)
                )
            if isinstance(event, ExecutionInterrupted):
                raise ComfyInterrupted(node_id=event.node_id, node_type=event.node_type)
            if isinstance(event, Executing) and event.node is not None:
                if on_event is not None:
                    on_event(event)
                continue
            if event is None or isinstance(event, Disconnected | Executing):
                try:
                    entry = await self.history(prompt_id)
                    if entry is None and not await self._known(prompt_id):
                        raise ComfyLost(prompt_id)
                except ComfyUnavailable:
                    # A restart looks like a short outage: give it a moment, so a server that comes
                    # back without our prompt is reported as a restart, and a dead one still fails fast.
                    unreachable_since = unreachable_since or time.monotonic()
                    if time.monotonic() - unreachable_since > self.outage_grace:
                        raise
                    await asyncio.sleep(min(self.poll_interval, 0.5))
                    continue
                unreachable_since = None
                if entry is not None:
                    return settle_entry(entry)
                continue
            if on_event is not None:
                on_event(event)

    async def _known(self, prompt_id: str) -> bool:
        """Whether ComfyUI still has the prompt queued, running, or finished."""
        running, pending = await self.queue_ids()
        if prompt_id in running or prompt_id in pending:
            return True
        # It may have finished between the two reads.
        return await self.history(prompt_id) is not None

    # -- HTTP ---------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, f"{self.base_url}{path}", **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ComfyUnreachable(self.base_url, _transport_reason(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ComfyUnavailable(self.base_url, "timed out") from exc
        except httpx.TransportError as exc:
            raise ComfyUnavailable(self.base_url, _transport_reason(exc)) from exc

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 500:
            raise ComfyUnavailable(self.base_url, f"{what} answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ComfyProtocolError(f"ComfyUI {what} answered HTTP {response.status_code}")

    async def upload_image(self, data: bytes, *, name: str, subfolder: str) -> str:
        """Upload (overwriting) an input image; returns the `LoadImage` value for it."""
        response = await self._request(
            "POST",
            "/upload/image",
            files={"image": (name, data, "image/png")},
            data={"overwrite": "true", "type": "input", "subfolder": subfolder},
        )
        self._check(response, "image upload")
        body = _json(response)
        stored_name, stored_folder = body.get("name", name), body.get("subfolder", subfolder)
        return f"{stored_folder}/{stored_name}" if stored_folder else str(stored_name)

    async def queue_prompt(self, prompt: dict[str, Any], *, prompt_id: str) -> None:
        response = await self._request(
            "POST", "/prompt", json={"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        )
        if response.status_code == 400:
            raise ComfyRejected(describe_rejection(_json(response, strict=False)))
        self._check(response, "/prompt")
        body = _json(response)
        if body.get("node_errors"):
            # Queued, but with the invalid branches silently dropped: not the run we asked for.
            await self.cancel(prompt_id)
            raise ComfyRejected(describe_rejection(body))

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/history/{prompt_id}")
        self._check(response, "/history")
        entry = _json(response).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def queue_ids(self) -> tuple[set[str], set[str]]:
        response = await self._request("GET", "/queue")
        self._check(response, "/queue")
        body = _json(response)

        def ids(items: object) -> set[str]:
            return (
                {str(item[1]) for item in items if isinstance(item, list) and len(item) > 1}
                if isinstance(items, list)
                else set()
            )

        return ids(body.get("queue_running")), ids(body.get("queue_pending"))

    async def cancel(self, prompt_id: str) -> Withdrawal:
        """Take the prompt out of ComfyUI: delete it from the queue while it waits, interrupt it
        while it runs, and never touch another client's prompt; what was done.

        ComfyUI's `/queue` delete only affects waiting prompts, and `/interrupt` stops whatever
        runs unless the body names a prompt id, which only 2025+ servers honour (fact 19). So the
        queue is read first and the interrupt is sent only while OUR prompt is the running one,
        with its id in the body as well. A waiting prompt may start between the read and the
        delete (a no-op then), so the queue is read again after a delete.
        """
        running, pending = await self.queue_ids()
        deleted = False
        if prompt_id in pending:
            response = await self._request("POST", "/queue", json={"delete": [prompt_id]})
            self._check(response, "/queue delete")
            running, pending = await self.queue_ids()
            deleted = prompt_id not in pending and prompt_id not in running
        if prompt_id in running:
            response = await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
            self._check(response, "/interrupt")
            return Withdrawal.INTERRUPTED
        return Withdrawal.DELETED if deleted else Withdrawal.ABSENT

    async def view(self, image: OutputImage) -> bytes:
        response = await self._request(
            "GET", "/view", params={"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        )
        if response.status_code == 404:
            raise ComfyProtocolError(f"ComfyUI no longer has the output file {image.filename}")
        self._check(response, "/view")
        return response.content

    async def ping(self) -> bool:
        """Whether the server answers a cheap request within `PING_TIMEOUT` (health checks)."""
        try:
            response = await self._request("GET", "/prompt", timeout=PING_TIMEOUT)
        except ComfyUnavailable:
            return False
        return response.status_code == 200


def output_image(entry: dict[str, Any], node_id: str) -> OutputImage:
    """The first image the output node saved, from a successful history entry."""
    outputs = entry.get("outputs", {})
    images = outputs.get(node_id, {}).get("images", []) if isinstance(outputs, dict) else []
    if not images or not isinstance(images[0], dict) or "filename" not in images[0]:
        raise ComfyProtocolError(f"ComfyUI finished but produced no image at output node {node_id}")
    first = images[0]
    return OutputImage(
        filename=first["filename"], subfolder=first.get("subfolder", ""), type=first.get("type", "output")
    )


def settle_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry itself for a successful run; raises ComfyExecutionError/ComfyInterrupted otherwise."""
    status = entry.get("status", {}) if isinstance(entry.get("status"), dict) else {}
    if status.get("status_str") == "success" or status.get("completed") is True:
        return entry
    messages = status.get("messages", [])
    for kind, data in reversed(messages if isinstance(messages, list) else []):
        if kind == "execution_error" and isinstance(data, dict):
            raise ComfyExecutionError(
                node_id=str(data.get("node_id", "?")),
                node_type=str(data.get("node_type", "?")),
                message=_short(str(data.get("exception_message", ""))),
            )
        if kind == "execution_interrupted" and isinstance(data, dict):
            raise ComfyInterrupted(node_id=data.get("node_id"), node_type=data.get("node_type"))
    raise ComfyProtocolError("ComfyUI reported the run as failed without saying why")


def _json(response: httpx.Response, *, strict: bool = True) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not strict:
            return {"error": response.text[:200]}
        raise ComfyProtocolError(f"ComfyUI answered HTTP {response.status_code} with a non-JSON body") from exc
    if not isinstance(body, dict):
        raise ComfyProtocolError("ComfyUI answered with unexpected JSON")
    return body


def _short(message: str, limit: int = 300) -> str:
    """The first line of an exception message (ComfyUI appends multi-line tips to some), bounded."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "connection dropped"
    return type(exc).__name__
