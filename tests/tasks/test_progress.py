"""Progress from ComfyUI's messages: weighted by node count and sampler steps, never backwards."""

from __future__ import annotations

import asyncio

from comfy.messages import Executing, ExecutionCached, Progress, ProgressState
from comfy.progress import ProgressTracker
from tasks.progress import ProgressReporter

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {}},
    "2": {"class_type": "KSampler", "inputs": {"steps": 8}},
    "3": {"class_type": "SaveImage", "inputs": {}},
}  # weights 1 + 8 + 1 = 10


def state(**nodes: tuple[str, float, float]) -> ProgressState:
    return ProgressState(
        prompt_id="p", nodes={n: {"state": s, "value": v, "max": m, "node_id": n} for n, (s, v, m) in nodes.items()}
    )


def test_sampler_steps_weigh_more_than_other_nodes() -> None:
    tracker = ProgressTracker(GRAPH)
    assert tracker.feed(state(**{"1": ("finished", 1, 1)})) == 0.1
    assert tracker.feed(Progress(prompt_id="p", node="2", value=4, max=8)) == 0.5


def test_progress_never_goes_backwards() -> None:
    tracker = ProgressTracker(GRAPH)
    tracker.feed(Progress(prompt_id="p", node="2", value=6, max=8))
    assert tracker.feed(Progress(prompt_id="p", node="2", value=2, max=8)) is None
    assert tracker.value == 0.6


def test_cached_nodes_count_as_done() -> None:
    tracker = ProgressTracker(GRAPH)
    assert tracker.feed(ExecutionCached(prompt_id="p", nodes=("1", "3"))) == 0.2


def test_without_progress_state_a_new_node_means_the_previous_one_finished() -> None:
    tracker = ProgressTracker(GRAPH)
    tracker.feed(Executing(prompt_id="p", node="1"))
    assert tracker.feed(Executing(prompt_id="p", node="2")) == 0.1


def test_everything_finished_is_one() -> None:
    tracker = ProgressTracker(GRAPH)
    done = {n: ("finished", 1, 1) for n in GRAPH}
    assert tracker.feed(state(**done)) == 1.0


async def test_reporter_throttles_and_always_delivers_the_latest_value() -> None:
    delivered: list[float] = []
    finished = asyncio.Event()

    async def sink(value: float) -> None:
        delivered.append(value)
        if value == 1.0:
            finished.set()

    async with ProgressReporter(sink, min_interval=0.05) as reporter:
        for step in range(1, 11):
            reporter.update(step / 10)
        await asyncio.wait_for(finished.wait(), timeout=2)
    assert delivered[-1] == 1.0
    assert len(delivered) <= 3
