"""Sharing the ComfyUI servers between every worker: slots, least loaded first, and fair turns.

Slots. Each server holds at most `capacity` of our prompts (running + waiting), whichever
workers sent them. A slot is a field of the Redis hash `restoration:slots:{server}` (field = the
slot's index, value = `owner|expiry`): taking one, renewing it and giving it back are single Lua
scripts, so workers on many hosts never overbook a server, and a worker that dies without giving
its slots back loses them when their lease runs out. The slot's index also names the job's input
file on that server, so a server's input folder never holds more than `capacity` of our files.

No black hole. A worker takes a message off the queue only after it holds a slot on a server it
can reach (`SlotGate.dequeue`, called by Huey's consumer threads in place of a plain dequeue), so
a worker whose servers are all down leaves the jobs to the workers that can run them.

Fair turns. Jobs are ordered by Huey's priority queue (a Redis sorted set). Each job gets a
start tag when it is queued: `max(clock, the user's previous tag + 1)`, where `clock` is the tag
of the job started last (start-time fair queueing). A user's jobs thus get consecutive tags, and
a newcomer's first job gets the current clock, so it is next after the job that started last;
ties go in arrival order. There is no per-user limit, and one user alone simply gets 0, 1, 2, ...
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger("restore.scheduler")

SLOTS_PREFIX = "restoration:slots:"
CLOCK_KEY = "restoration:fair:clock"
LAST_TAG_PREFIX = "restoration:fair:last:"
# A user's last tag only matters while their jobs wait; a day covers any backlog.
LAST_TAG_TTL_SECONDS = 86_400
# While no slot is free, a consumer thread looks again this often (a slot freed by this worker
# wakes it at once).
SLOT_POLL_SECONDS = 0.1

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local best, best_slot, best_load = nil, nil, nil
for k = 1, #KEYS do
  local load, free = 0, nil
  for i = 0, capacity - 1 do
    local value = redis.call('HGET', KEYS[k], tostring(i))
    local live = false
    if value then
      local bar = string.find(value, '|', 1, true)
      if bar and tonumber(string.sub(value, bar + 1)) > now then live = true end
    end
    if live then load = load + 1 elseif free == nil then free = i end
  end
  if free ~= nil and (best_load == nil or load < best_load) then
    best, best_slot, best_load = k, free, load
  end
end
if best == nil then return nil end
redis.call('HSET', KEYS[best], tostring(best_slot), ARGV[3] .. '|' .. tostring(now + lease))
return {best, best_slot}
"""

_RENEW = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value or string.sub(value, 1, string.len(ARGV[2]) + 1) ~= ARGV[2] .. '|' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. tostring(now + tonumber(ARGV[3])))
return 1
"""

_RELEASE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and string.sub(value, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. '|' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

_LOAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local loads = {}
for k = 1, #KEYS do
  local load = 0
  local values = redis.call('HVALS', KEYS[k])
  for _, value in ipairs(values) do
    local bar = string.find(value, '|', 1, true)
    if bar and tonumber(string.sub(value, bar + 1)) > now then load = load + 1 end
  end
  loads[k] = load
end
return loads
"""

_TAG = """
local clock = tonumber(redis.call('GET', KEYS[1]) or '0')
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
local tag = math.max(clock, last + 1)
redis.call('SET', KEYS[2], tostring(tag), 'EX', tonumber(ARGV[1]))
return tag
"""

_ADVANCE = """
local clock = tonumber(redis.call('GET', KEYS[1]) or '0')
local tag = tonumber(ARGV[1])
if tag > clock then redis.call('SET', KEYS[1], tostring(tag)) end
return 1
"""


@dataclass(frozen=True)
class Slot:
    """One of a server's `capacity` places for a prompt of ours, held by `owner` under a lease."""

    server: str
    index: int
    owner: str


class SlotBoard:
    """The slots of every server, kept in Redis (sync client: callers in async code use a thread)."""

    def __init__(self, client: redis.Redis, *, capacity: int, lease_seconds: float) -> None:
        self._client = client
        self.capacity = capacity
        self._lease_ms = int(lease_seconds * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._load = client.register_script(_LOAD)

    @staticmethod
    def key(server: str) -> str:
        return SLOTS_PREFIX + server

    def acquire(self, servers: Sequence[str], *, owner: str) -> Slot | None:
        """A free slot on the least loaded of `servers` (ties: the first listed), or None."""
        if not servers:
            return None
        taken: Any = self._acquire(keys=[self.key(s) for s in servers], args=[self.capacity, self._lease_ms, owner])
        if not taken:
            return None
        server_number, index = int(taken[0]), int(taken[1])
        return Slot(server=servers[server_number - 1], index=index, owner=owner)

    def renew(self, slot: Slot) -> bool:
        """Extend the lease; False when the slot is no longer ours (it expired and was taken)."""
        return bool(self._renew(keys=[self.key(slot.server)], args=[slot.index, slot.owner, self._lease_ms]))

    def release(self, slot: Slot) -> None:
        """Give the slot back (a no-op when it is no longer ours)."""
        self._release(keys=[self.key(slot.server)], args=[slot.index, slot.owner])

    def loads(self, servers: Sequence[str]) -> dict[str, int]:
        """Prompts of ours each server holds now, counted across all workers."""
        if not servers:
            return {}
        counts: Any = self._load(keys=[self.key(s) for s in servers])
        return {server: int(count) for server, count in zip(servers, counts, strict=True)}


class FairTurns:
    """Start tags for fair turns between users (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._tag = client.register_script(_TAG)
        self._advance = client.register_script(_ADVANCE)

    def tag_for(self, user_id: str) -> int:
        """The tag of a job `user_id` queues now; Huey's priority is its negation (lowest first)."""
        return int(self._tag(keys=[CLOCK_KEY, LAST_TAG_PREFIX + user_id], args=[LAST_TAG_TTL_SECONDS]))

    def clock(self) -> int:
        """The tag of the job started last: a job queued with it is next in line."""
        return int(self._client.get(CLOCK_KEY) or 0)

    def started(self, tag: int) -> None:
        """A job with `tag` left the queue: the clock moves up to it."""
        self._advance(keys=[CLOCK_KEY], args=[tag])


Reachable = Callable[[], Sequence[str]]


class SlotGate:
    """What a consumer thread does instead of a plain dequeue: hold a slot first, then take a job.

    `dequeue(pop)` waits up to `wait` seconds for a free slot on a server this worker can reach
    (`reachable()`), then pops one message; with no slot it returns None and the message stays
    for someone else. The slot travels with the thread to the task body (`take()`), which hands
    it back with `release()`, normally as soon as ComfyUI has finished the prompt.
    """

    def __init__(
        self, board: SlotBoard, fair: FairTurns, *, reachable: Reachable, owner: str, wait: float = 1.0
    ) -> None:
        self.board = board
        self.fair = fair
        self._reachable = reachable
        self._owner = owner
        self._wait = wait
        self._local = threading.local()
        self._freed = threading.Condition()

    def dequeue(self, pop: Callable[[], Any]) -> Any:
        slot = self._reserve()
        if slot is None:
            return None
        try:
            task = pop()
        except BaseException:
            self.release(slot)
            raise
        if task is None:
            self.release(slot)
            return None
        if task.priority is not None:
            self.fair.started(-int(task.priority))
        self._local.slot = slot
        return task

    def take(self) -> Slot | None:
        """The slot this thread reserved for the task it is about to run (once)."""
        slot: Slot | None = getattr(self._local, "slot", None)
        self._local.slot = None
        return slot

    def release(self, slot: Slot) -> None:
        self.board.release(slot)
        with self._freed:
            self._freed.notify()

    def _reserve(self) -> Slot | None:
        deadline = time.monotonic() + self._wait
        while True:
            slot = self.board.acquire(list(self._reachable()), owner=f"{self._owner}:{uuid.uuid4().hex[:8]}")
            if slot is not None:
                return slot
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._freed:
                self._freed.wait(min(SLOT_POLL_SECONDS, remaining))
