"""Rounds of background work (the reconciler, the pending deadline, the sweep of expired uploads):
one round every `interval` seconds for as long as a block lasts. A round that meets an unavailable
dependency is skipped with one warning, any other error is logged with its traceback, and the next
round runs either way: one bad round never stops the work for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from models.repository import DatabaseUnavailable

Round = Callable[[], Awaitable[object]]


async def every(
    interval: float,
    round_: Round,
    *,
    log: logging.Logger,
    event: str,
    unavailable: tuple[type[Exception], ...] = (DatabaseUnavailable,),
) -> None:
    """Run `round_` now and then every `interval` seconds, forever; logs `{event}.skipped` and
    `{event}.failed`."""
    while True:
        try:
            await round_()
        except unavailable as exc:
            log.warning(f"{event}.skipped", extra={"reason": "dependency unavailable", "detail": str(exc)})
        except Exception:
            log.exception(f"{event}.failed")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    interval: float,
    round_: Round,
    *,
    log: logging.Logger,
    event: str,
    unavailable: tuple[type[Exception], ...] = (DatabaseUnavailable,),
) -> AsyncIterator[None]:
    """`every` in the background for the duration of the block, cancelled and awaited on exit."""
    task = asyncio.create_task(every(interval, round_, log=log, event=event, unavailable=unavailable), name=event)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])
