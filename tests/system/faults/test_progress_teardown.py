"""The end of a job must not wait on its progress reporting, whatever its sink does with a
cancellation, and a job's deadline must not be lost while the reporter is being stopped.

Found by the soak benchmark (tests/bench/soak.py): about 1 job in 500 stayed `processing` until
JOB_TIMEOUT_SECONDS (300 s), then completed. The worker's task dump showed `Restorer._process`
waiting in `ProgressReporter.__aexit__` for a reporter task that had been cancelled but was
back at `await self._wake.wait()`. Its sink publishes over redis-py's asyncio client, and on
Python 3.11 `asyncio.wait_for` (used inside redis-py) returns the reply instead of raising when
the reply arrives in the same loop iteration as the cancellation: the cancellation is lost.
`LateReply` below is that call, made deterministic.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tasks.progress import ProgressReporter


class LateReply:
    """A sink whose call is answered in the very iteration its caller is cancelled (the reply is
    set just before the reporter is stopped), through `asyncio.wait_for` as redis-py does."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.reply: asyncio.Future[None] | None = None

    async def __call__(self, value: float) -> None:
        self.reply = asyncio.get_running_loop().create_future()
        self.entered.set()
        await asyncio.wait_for(self.reply, timeout=30)

    def answer(self) -> None:
        assert self.reply is not None
        self.reply.set_result(None)


class SlowToCancel:
    """A sink in a call that takes a moment to clean up when cancelled (e.g. a database round
    trip being rolled back)."""

    def __init__(self, cleanup: float) -> None:
        self.cleanup = cleanup
        self.entered = asyncio.Event()

    async def __call__(self, value: float) -> None:
        self.entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(self.cleanup)
            raise


async def test_stopping_the_reporter_returns_even_if_a_cancellation_is_lost_in_its_sink() -> None:
    sink = LateReply()
    started = time.monotonic()
    async with asyncio.timeout(3):  # a safety net only: see the next test for what it may not do
        async with ProgressReporter(sink, min_interval=0) as reporter:
            reporter.update(0.5)
            await sink.entered.wait()
            sink.answer()  # the reply arrives just as the job ends and the reporter is stopped
    assert time.monotonic() - started < 1.0


async def test_a_deadline_passing_while_the_reporter_stops_still_times_the_job_out() -> None:
    sink = SlowToCancel(cleanup=0.5)

    async def job() -> None:
        async with asyncio.timeout(0.2):  # Restorer._run_claimed's job_timeout
            async with ProgressReporter(sink, min_interval=0) as reporter:
                reporter.update(0.5)
                await sink.entered.wait()
            # the deadline passed during the reporter's teardown: the job must not carry on
            await asyncio.sleep(0)

    with pytest.raises(TimeoutError):
        await job()
