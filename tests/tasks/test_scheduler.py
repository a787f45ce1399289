"""Slots per ComfyUI server and fair turns, on the real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from huey import PriorityRedisHuey

from tasks.scheduler import FairTurns, SlotBoard, SlotGate

SERVERS = ["http://gpu1:8188", "http://gpu2:8188"]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.close()


def board(client: redis.Redis, *, capacity: int = 2, lease: float = 30.0) -> SlotBoard:
    return SlotBoard(client, capacity=capacity, lease_seconds=lease)


def test_a_server_never_gets_more_than_its_capacity(client: redis.Redis) -> None:
    slots = board(client)
    taken = [slots.acquire(SERVERS[:1], owner=f"w{n}") for n in range(3)]
    assert [slot.index if slot else None for slot in taken] == [0, 1, None]


def test_the_least_loaded_server_gets_the_next_slot(client: redis.Redis) -> None:
    slots = board(client)
    first = slots.acquire(SERVERS, owner="a")
    second = slots.acquire(SERVERS, owner="b")
    third = slots.acquire(SERVERS, owner="c")
    assert first
    assert second
    assert third
    assert [first.server, second.server, third.server] == [SERVERS[0], SERVERS[1], SERVERS[0]]
    assert slots.loads(SERVERS) == {SERVERS[0]: 2, SERVERS[1]: 1}


def test_two_boards_on_one_redis_share_the_count(client: redis.Redis, redis_url: str) -> None:
    other = redis.Redis.from_url(redis_url)
    try:
        assert board(client).acquire(SERVERS[:1], owner="a") is not None
        assert board(other).acquire(SERVERS[:1], owner="b") is not None
        assert board(other).acquire(SERVERS[:1], owner="c") is None
    finally:
        other.close()


def test_a_released_slot_is_free_again(client: redis.Redis) -> None:
    slots = board(client, capacity=1)
    slot = slots.acquire(SERVERS[:1], owner="a")
    assert slot is not None
    slots.release(slot)
    assert slots.acquire(SERVERS[:1], owner="b") == type(slot)(server=SERVERS[0], index=0, owner="b")


def test_a_dead_owners_slot_comes_back_when_its_lease_runs_out(client: redis.Redis) -> None:
    slots = board(client, capacity=1, lease=0.2)
    assert slots.acquire(SERVERS[:1], owner="dead") is not None
    assert slots.acquire(SERVERS[:1], owner="b") is None
    time.sleep(0.25)  # the lease is wall-clock time in Redis; nothing to await
    assert slots.acquire(SERVERS[:1], owner="b") is not None


def test_renewing_keeps_the_slot_and_fails_once_it_is_lost(client: redis.Redis) -> None:
    slots = board(client, capacity=1, lease=0.2)
    slot = slots.acquire(SERVERS[:1], owner="a")
    assert slot is not None
    assert slots.renew(slot)
    slots.release(slot)
    assert not slots.renew(slot)


def test_releasing_someone_elses_slot_does_nothing(client: redis.Redis) -> None:
    slots = board(client, capacity=1)
    mine = slots.acquire(SERVERS[:1], owner="a")
    assert mine is not None
    slots.release(type(mine)(server=mine.server, index=mine.index, owner="intruder"))
    assert slots.loads(SERVERS[:1]) == {SERVERS[0]: 1}


def test_no_reachable_server_means_no_slot(client: redis.Redis) -> None:
    assert board(client).acquire([], owner="a") is None


def test_one_users_jobs_get_consecutive_tags(client: redis.Redis) -> None:
    fair = FairTurns(client)
    assert [fair.tag_for("alice") for _ in range(3)] == [0, 1, 2]


def test_a_newcomer_is_tagged_at_the_clock_ahead_of_a_backlog(client: redis.Redis) -> None:
    fair = FairTurns(client)
    backlog = [fair.tag_for("alice") for _ in range(200)]
    fair.started(backlog[0])
    fair.started(backlog[1])
    assert fair.tag_for("bob") == 1  # ties with alice's started job 1, ahead of her 2..199


def test_the_clock_never_goes_back(client: redis.Redis) -> None:
    fair = FairTurns(client)
    for _ in range(5):
        fair.tag_for("alice")
    fair.started(4)
    fair.started(2)
    assert fair.tag_for("bob") == 4


def test_the_gate_takes_no_message_without_a_slot(client: redis.Redis, redis_url: str) -> None:
    huey = PriorityRedisHuey("gate-test", url=redis_url, blocking=False, results=False)
    popped: list[str] = []
    gate = SlotGate(board(client), FairTurns(client), reachable=lambda: [], owner="w", wait=0.05)
    assert gate.dequeue(lambda: popped.append("taken")) is None
    assert popped == []
    huey.storage.close()


def test_the_gate_gives_the_slot_back_when_the_queue_is_empty(client: redis.Redis) -> None:
    slots = board(client, capacity=1)
    gate = SlotGate(slots, FairTurns(client), reachable=lambda: SERVERS[:1], owner="w", wait=0.05)
    assert gate.dequeue(lambda: None) is None
    assert slots.loads(SERVERS[:1]) == {SERVERS[0]: 0}


def test_a_freed_slot_wakes_a_waiting_thread_at_once(client: redis.Redis) -> None:
    slots = board(client, capacity=1)
    gate = SlotGate(slots, FairTurns(client), reachable=lambda: SERVERS[:1], owner="w", wait=5.0)
    held = slots.acquire(SERVERS[:1], owner="holder")
    assert held is not None
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(gate._reserve()))
    waiter.start()
    gate.release(held)
    waiter.join(timeout=2)
    assert got
    assert got[0] is not None
