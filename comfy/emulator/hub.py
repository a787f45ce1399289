"""The websocket side: who is connected under which id, and an ordered outbox like ComfyUI's ``send_sync``.

Routing copies ComfyUI 0.3.64's ``server.py``: sockets are kept in a dict keyed by client id, so a
second socket with the same id takes over the routing while the first stays open and silent (fact 10),
and whichever socket closes pops the id (a closing *old* socket therefore also unroutes the new one,
as in the real server). Broadcasts go to the routed sockets only.
"""

import asyncio
import contextlib
import json
import logging
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

logger = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_FORMAT = {"JPEG": 1, "PNG": 2}
# A client that stops reading must not stall every other socket forever (ComfyUI would).
SEND_TIMEOUT = 10.0
SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def encode_preview(image: bytes, image_format: str) -> bytes:
    """Event 1 payload: ``[u32 format][image bytes]``."""
    return struct.pack(">I", IMAGE_FORMAT[image_format]) + image


def encode_preview_with_metadata(image: bytes, metadata: dict[str, Any]) -> bytes:
    """Event 4 payload: ``[u32 json length][json][image bytes]``."""
    meta = json.dumps(metadata).encode("utf-8")
    return struct.pack(">I", len(meta)) + meta + image


@dataclass
class Connection:
    sid: str
    socket: WebSocket
    feature_flags: dict[str, Any] = field(default_factory=dict)
    # Serializes writes, so the connect-time frames go out before any queued broadcast.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WebSocketHub:
    """Connected sockets and an ordered outbox drained by one publisher task."""

    def __init__(self) -> None:
        self.sockets: dict[str, Connection] = {}
        self.open_connections: list[Connection] = []
        self.client_id: str | None = None  # the running prompt's client id
        self.last_node_id: str | None = None  # its executing node, replayed to a reconnecting client
        self._outbox: asyncio.Queue[tuple[str | int, Any, str | None]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name="emulator-ws-publisher")

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher

    def send(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Queue a JSON message (``event`` is its type) or a binary frame (``event`` is an int)."""
        self._outbox.put_nowait((event, data, sid))

    async def flush(self) -> None:
        """Wait until everything queued so far has been written to the sockets."""
        await self._outbox.join()

    def supports_preview_metadata(self, sid: str | None) -> bool:
        connection = self.sockets.get(sid) if sid is not None else None
        return bool(connection and connection.feature_flags.get("supports_preview_metadata"))

    def routed_ids(self) -> list[str]:
        return list(self.sockets)

    async def _publish_loop(self) -> None:
        while True:
            event, data, sid = await self._outbox.get()
            try:
                await self._deliver(event, data, sid)
            except Exception:
                logger.exception("emulator.ws.deliver_failed", extra={"frame": event})
            finally:
                self._outbox.task_done()

    async def _deliver(self, event: str | int, data: Any, sid: str | None) -> None:
        if sid is None:
            targets = list(self.sockets.values())
        else:
            connection = self.sockets.get(sid)
            targets = [connection] if connection is not None else []
        for connection in targets:
            await self._send_now(connection, event, data)

    @classmethod
    async def _send_now(cls, connection: Connection, event: str | int, data: Any) -> None:
        async with connection.lock:
            await cls._write(connection, event, data)

    @staticmethod
    async def _write(connection: Connection, event: str | int, data: Any) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                if isinstance(event, int):
                    await connection.socket.send_bytes(struct.pack(">I", event) + bytes(data))
                else:
                    await connection.socket.send_text(json.dumps({"type": event, "data": data}))
        except TimeoutError:
            logger.warning(
                "emulator.ws.frame_dropped",
                extra={"sid": connection.sid, "frame": event, "note": "the client does not read its socket"},
            )
        except Exception as exc:  # the socket went away between lookup and send
            logger.debug("emulator.ws.send_failed", extra={"sid": connection.sid, "error": repr(exc)})

    async def serve(self, socket: WebSocket, client_id: str, queue_info: Callable[[], dict[str, Any]]) -> None:
        """Run one ``/ws`` connection until the client goes away."""
        await socket.accept()
        sid = client_id or uuid.uuid4().hex
        connection = Connection(sid, socket)
        logger.info("emulator.ws.connected", extra={"sid": sid})
        try:
            async with connection.lock:
                self.sockets.pop(sid, None)
                self.sockets[sid] = connection
                self.open_connections.append(connection)
                await self._write(connection, "status", {"status": queue_info(), "sid": sid})
                if self.client_id == sid and self.last_node_id is not None:
                    await self._write(connection, "executing", {"node": self.last_node_id})
            first_message = True
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    continue
                try:
                    data = json.loads(text)
                except ValueError:
                    logger.warning("emulator.ws.invalid_json", extra={"sid": sid, "text": text})
                    continue
                if first_message and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data", {})
                    connection.feature_flags = flags if isinstance(flags, dict) else {}
                    await self._send_now(connection, "feature_flags", dict(SERVER_FEATURES))
                    logger.info("emulator.ws.feature_flags", extra={"sid": sid, "flags": flags})
                first_message = False
        finally:
            self.sockets.pop(sid, None)
            if connection in self.open_connections:
                self.open_connections.remove(connection)
            logger.info("emulator.ws.closed", extra={"sid": sid})
