"""Background rounds (reconciler, pending deadline, upload sweep): one bad round never stops them."""

from __future__ import annotations

import asyncio
import logging

import pytest

from models.repository import DatabaseUnavailable
from tasks import periodic

log = logging.getLogger("test.periodic")


class Rounds:
    """A round that fails as scripted, then succeeds; `reached` is set at round `until`."""

    def __init__(self, *failures: Exception, until: int) -> None:
        self.failures = list(failures)
        self.count = 0
        self.until = until
        self.reached = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        if self.count >= self.until:
            self.reached.set()
        if self.failures:
            raise self.failures.pop(0)


async def test_a_round_that_meets_an_unavailable_database_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = Rounds(DatabaseUnavailable(), until=2)
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with periodic.running(0, rounds, log=log, event="sweep"):
            await asyncio.wait_for(rounds.reached.wait(), 5)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "sweep.skipped")]


async def test_a_bug_in_a_round_is_logged_with_its_traceback_and_the_next_round_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = Rounds(KeyError("bug"), KeyError("bug"), until=3)
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with periodic.running(0, rounds, log=log, event="sweep"):
            await asyncio.wait_for(rounds.reached.wait(), 5)
    failed = [r for r in caplog.records if r.getMessage() == "sweep.failed"]
    assert len(failed) == 2
    assert all(r.exc_info for r in failed)


async def test_the_rounds_stop_when_the_block_ends() -> None:
    rounds = Rounds(until=1)
    async with periodic.running(0.01, rounds, log=log, event="sweep"):
        await asyncio.wait_for(rounds.reached.wait(), 5)
    after = rounds.count
    await asyncio.sleep(0.05)  # several intervals: no round may run once the block has ended
    assert rounds.count == after
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "sweep"]


async def test_an_error_outside_the_unavailable_ones_of_a_round_counts_as_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = Rounds(DatabaseUnavailable(), until=2)
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with periodic.running(0, rounds, log=log, event="sweep", unavailable=(OSError,)):
            await asyncio.wait_for(rounds.reached.wait(), 5)
    assert [r.getMessage() for r in caplog.records] == ["sweep.failed"]
