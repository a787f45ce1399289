"""The ComfyUI slot one job holds while the worker runs it (`tasks.scheduler` slots)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from comfy.client import ComfyClient
from comfy.servers import ComfyServers
from tasks.job_watch import JobWatch
from tasks.scheduler import SLOT_POLL_SECONDS, Slot, SlotBoard

log = logging.getLogger("restore.pipeline")

GiveBack = Callable[[Slot], None]


class HeldSlot:
    """The slot a job holds, if any: reserved (waiting for one when none is free), renewed while
    the job runs, given back once (as soon as ComfyUI is done with the prompt, or the job is
    cancelled). `sent` records whether the job's prompt reached the slot's server."""

    def __init__(
        self,
        *,
        servers: ComfyServers,
        slots: SlotBoard,
        worker_id: str,
        give_back: GiveBack | None,
        slot: Slot | None,
    ) -> None:
        self._servers = servers
        self._slots = slots
        self._worker_id = worker_id
        # The worker's `SlotGate.release` (which also wakes its waiting threads), else the board's.
        self._give_back = give_back or slots.release
        self.slot = slot
        self.client: ComfyClient | None = servers.client(slot.server) if slot else None
        self.waiting = False
        self.sent = False

    async def ensure(self, watch: JobWatch) -> Slot:
        """The held slot, or a new one on a reachable server, waiting as long as the job may
        (Stopped when it is cancelled meanwhile)."""
        if self.slot is not None:
            return self.slot
        owner = f"{self._worker_id}:{uuid.uuid4().hex[:8]}"
        self.waiting = True
        while True:
            watch.check()
            slot = await asyncio.to_thread(self._slots.acquire, self._servers.reachable(), owner=owner)
            if slot is not None:
                break
            await asyncio.sleep(SLOT_POLL_SECONDS)
        self.waiting = False
        self.slot, self.client = slot, self._servers.client(slot.server)
        return slot

    async def renew(self) -> None:
        if self.slot is not None:
            with contextlib.suppress(OSError, ConnectionError):
                await asyncio.to_thread(self._slots.renew, self.slot)

    async def release(self) -> None:
        slot, self.slot = self.slot, None
        if slot is None:
            return
        try:
            await asyncio.to_thread(self._give_back, slot)
        except Exception:  # Redis away: the lease runs out by itself
            log.warning("restore.slot_not_released", extra={"server": slot.server, "slot": slot.index})
