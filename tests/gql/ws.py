"""A small client for both GraphQL subscription protocols, for the tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

JOB_UPDATED = """subscription($id: ID!) { jobUpdated(id: $id) {
  id status progress processedImageUrl errorMessage updatedAt } }"""


class GraphQLSocket:
    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol

    @classmethod
    async def open(
        cls, api_url: str, *, protocol: str = TRANSPORT_WS, headers: dict[str, str] | None = None
    ) -> GraphQLSocket:
        url = api_url.replace("http://", "ws://") + "/graphql"
        connection = await connect(url, subprotocols=[protocol], additional_headers=headers or {}, open_timeout=10)
        return cls(connection, protocol)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, wait: float = 15) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.connection.recv(), timeout=wait))
            if message.get("type") not in ("ka", "ping", "pong"):
                return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
        return await self.receive()

    async def subscribe(self, query: str, variables: dict[str, Any], operation_id: str = "1") -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": operation_id, "type": kind, "payload": {"query": query, "variables": variables}})

    async def stop(self, operation_id: str = "1") -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.send({"id": operation_id, "type": kind})

    async def results(self, operation_id: str = "1") -> list[dict[str, Any]]:
        """Every payload of the operation until it completes (data and errors alike)."""
        payloads = []
        while True:
            message = await self.receive()
            if message.get("id") != operation_id:
                continue
            if message["type"] == "complete":
                return payloads
            if message["type"] in ("next", "data", "error"):
                payloads.append(message["payload"])

    async def close(self) -> None:
        await self.connection.close()
