"""Where a job stands: its place in the queue and an estimate of when it will be done.

Positions. Huey's priority queue is a Redis sorted set whose order IS the start order (workers
pop its lowest member; `tasks.queue.FairStorage`). At enqueue the queue remembers each job's
member in a hash (`job id → member`), so a job's place is `ZRANK` of its member: O(log n), exact,
and nothing to keep in step with the queue (a popped or withdrawn member simply has no rank).

Estimates (moving averages in one Redis hash, shared by every worker and API process):

* `interval` — seconds between two job starts while jobs were waiting (the queue's throughput,
  whatever the number of workers and servers); measured at each start (`FairHuey.dequeue`).
* `exec:{workflow}:{size class}` and `exec:{workflow}:*` — seconds from a job's start to its
  completion, per workflow file (by hash) and per size class of the original (by megapixels,
  recorded at submit); measured when a job completes (`observing`, around the worker's listener).

A pending job at place p: `eta = wait + exec`, where the wait is the rest of the current start
interval plus `p - 1` more (`p` intervals of a job execution while no interval was measured yet);
a processing job: `exec - elapsed`, or from its progress once it runs over. Never negative; null
while nothing was measured. Each start also publishes a small "queue moved" message on the job
event channel, so the API re-sends the position of its pending watchers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from models.job import JobStatus, RestorationJob
from tasks.events import CHANNEL, QueueMoved
from workflows.binding import Workflow

log = logging.getLogger("restore.estimates")

JOBS_KEY = "restoration:eta:jobs"  # job id → "size class|start time" (start time once started)
STATS_KEY = "restoration:eta:stats"  # interval, last_start, busy, workflow, exec:{workflow}:{class}
# Weight of a new measurement in the moving averages: recent jobs count most, one odd job little.
EWMA_ALPHA = 0.2
# Figures are shown to people: a tenth of a second is precision enough.
ETA_DECIMALS = 1
ANY_SIZE = "*"

# KEYS: members, jobs, stats, queue. ARGV: job id, alpha, channel, message.
_STARTED = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local info = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local size = string.match(info, '^[^|]*') or ''
redis.call('HSET', KEYS[2], ARGV[1], size .. '|' .. string.format('%.6f', now))
local last = tonumber(redis.call('HGET', KEYS[3], 'last_start') or '')
if last and redis.call('HGET', KEYS[3], 'busy') == '1' then
  local gap = now - last
  local old = tonumber(redis.call('HGET', KEYS[3], 'interval') or '')
  local alpha = tonumber(ARGV[2])
  if old then gap = old + alpha * (gap - old) end
  redis.call('HSET', KEYS[3], 'interval', string.format('%.6f', gap))
end
local busy = '0'
if redis.call('ZCARD', KEYS[4]) > 0 then busy = '1' end
redis.call('HSET', KEYS[3], 'last_start', string.format('%.6f', now), 'busy', busy)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS: jobs, stats. ARGV: job id, completed (1/0), workflow, alpha.
_FINISHED = """
local info = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '1' or not info then return 0 end
local size, start = string.match(info, '^([^|]*)|(.+)$')
if not start or start == '' then return 0 end
local t = redis.call('TIME')
local seconds = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(start)
if seconds < 0 then return 0 end
local alpha = tonumber(ARGV[4])
local fields = {'exec:' .. ARGV[3] .. ':*'}
if size ~= '' then fields[2] = 'exec:' .. ARGV[3] .. ':' .. size end
for _, field in ipairs(fields) do
  local old = tonumber(redis.call('HGET', KEYS[2], field) or '')
  local value = seconds
  if old then value = old + alpha * (seconds - old) end
  redis.call('HSET', KEYS[2], field, string.format('%.6f', value))
end
redis.call('HSET', KEYS[2], 'workflow', ARGV[3])
return 1
"""

# KEYS: queue, members, jobs, stats. ARGV: job ids. Returns now, the stats, then per job its
# place (0: not in the queue) and its info.
_READ = """
local t = redis.call('TIME')
local out = {t[1] .. '.' .. string.format('%06d', tonumber(t[2])), redis.call('HGETALL', KEYS[4])}
for i = 1, #ARGV do
  local member = redis.call('HGET', KEYS[2], ARGV[i])
  local rank = false
  if member then rank = redis.call('ZRANK', KEYS[1], member) end
  if rank then out[#out + 1] = rank + 1 else out[#out + 1] = 0 end
  out[#out + 1] = redis.call('HGET', KEYS[3], ARGV[i]) or ''
end
return out
"""

# KEYS: queue, members, jobs. ARGV: job id, channel, message.
_WITHDRAW = """
local member = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not member then return 0 end
local removed = redis.call('ZREM', KEYS[1], member)
if removed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
"""


def size_class(megapixels: float) -> str:
    """The class of an image of this size: the power of two of megapixels it fits under
    (`0.25mp`, `0.5mp`, `1mp`, `2mp`, ...), so a 12 MP scan and a 0.3 MP snapshot are apart."""
    exponent = max(-2, math.ceil(math.log2(max(megapixels, 1e-6))))
    return f"{2.0**exponent:g}mp"


def workflow_key(workflow: Workflow) -> str:
    """A short hash of the workflow graph: estimates of one workflow never mix with another's."""
    canonical = json.dumps(workflow.graph, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]


@dataclass(frozen=True)
class Standing:
    """A job's place in the queue (pending only) and seconds until it is done (None: unknown)."""

    queue_position: int | None = None
    eta_seconds: float | None = None


UNKNOWN = Standing()


@dataclass(frozen=True)
class Asked:
    """What a reader knows of a job it asks about."""

    id: str
    status: JobStatus
    progress: float | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(stats: Mapping[str, str], field: str) -> float | None:
    try:
        return float(stats[field])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Snapshot:
    """The estimates as read at `now` (Redis's clock, the one every recorded time is on)."""

    now: float
    stats: Mapping[str, str]

    def execution(self, size: str) -> float | None:
        workflow = self.stats.get("workflow")
        if workflow is None:
            return None
        by_size = _number(self.stats, f"exec:{workflow}:{size}") if size else None
        return by_size if by_size is not None else _number(self.stats, f"exec:{workflow}:{ANY_SIZE}")

    def wait(self, position: int, execution: float) -> float:
        """Seconds until the job at `position` starts."""
        interval = _number(self.stats, "interval")
        if interval is None:  # no start was measured behind another yet: one job at a time
            return position * execution
        last = _number(self.stats, "last_start")
        elapsed = self.now - last if last is not None else interval
        return (position - 1) * interval + max(0.0, interval - max(0.0, elapsed))

    def standing(self, job: Asked, *, position: int, info: str) -> Standing:
        size, _, start = info.partition("|")
        execution = self.execution(size)
        if job.status is JobStatus.PENDING:
            place = position or None
            if execution is None:
                return Standing(queue_position=place)
            eta = execution + (self.wait(place, execution) if place else 0.0)
            return Standing(queue_position=place, eta_seconds=_seconds(eta))
        if job.status is JobStatus.PROCESSING and execution is not None:
            try:
                elapsed = max(0.0, self.now - float(start))
            except ValueError:  # started before the estimates knew it (an upgrade, a lost record)
                return Standing(eta_seconds=_seconds(execution))
            remaining = execution - elapsed
            if remaining <= 0 and job.progress:  # over the estimate: go by how far it got
                remaining = elapsed * (1.0 - job.progress) / job.progress
            return Standing(eta_seconds=_seconds(remaining))
        return UNKNOWN


def _seconds(value: float) -> float:
    return round(max(0.0, value), ETA_DECIMALS)


def queue_moved_message() -> str:
    return QueueMoved().encode()


class QueueEstimates:
    """The scripts behind positions and estimates on one Redis (sync client: async callers use a
    thread). `queue_key` is Huey's sorted set, `members_key` the job id → member hash beside it."""

    def __init__(self, client: redis.Redis, *, queue_key: str, members_key: str) -> None:
        self._client = client
        self._queue_key = queue_key
        self._members_key = members_key
        self._started = client.register_script(_STARTED)
        self._finished = client.register_script(_FINISHED)
        self._read = client.register_script(_READ)
        self._withdraw = client.register_script(_WITHDRAW)

    def note_size(self, pipe: Any, job_id: str, *, megapixels: float) -> None:
        """Queue (in `pipe`) the size class of a job's original, for its execution estimate."""
        pipe.hset(JOBS_KEY, job_id, size_class(megapixels) + "|")

    def started(self, job_id: str) -> bool:
        """The job left the queue to run: its start time, the interval since the previous start,
        and a "queue moved" broadcast. False for a message this queue did not place (withdrawn)."""
        keys = [self._members_key, JOBS_KEY, STATS_KEY, self._queue_key]
        return bool(self._started(keys=keys, args=[job_id, EWMA_ALPHA, CHANNEL, queue_moved_message()]))

    def finished(self, job_id: str, *, completed: bool, workflow: str) -> None:
        """The job ended; a completed one is a measurement of its workflow's execution time."""
        self._finished(keys=[JOBS_KEY, STATS_KEY], args=[job_id, int(completed), workflow, EWMA_ALPHA])

    def withdraw(self, job_id: str) -> bool:
        """Take a pending job out of the queue and the order (True: its message was removed)."""
        keys = [self._queue_key, self._members_key, JOBS_KEY]
        return bool(self._withdraw(keys=keys, args=[job_id, CHANNEL, queue_moved_message()]))

    def read(self, jobs: Sequence[Asked]) -> dict[str, Standing]:
        """Each job's standing, in ONE round trip (a page of 100 included)."""
        raw: Any = self._read(keys=[self._queue_key, self._members_key, JOBS_KEY, STATS_KEY], args=[j.id for j in jobs])
        flat = [_text(item) for item in raw[1]]
        snapshot = Snapshot(now=float(_text(raw[0])), stats=dict(zip(flat[::2], flat[1::2], strict=True)))
        answers = raw[2:]
        return {
            job.id: snapshot.standing(job, position=int(answers[2 * i]), info=_text(answers[2 * i + 1]))
            for i, job in enumerate(jobs)
        }

    def clear(self) -> None:
        """Forget every measurement and recorded job (for tests)."""
        self._client.delete(JOBS_KEY, STATS_KEY)


JobListener = Callable[[RestorationJob], Awaitable[None]]


def observing(estimates: QueueEstimates, listener: JobListener, *, workflow: str) -> JobListener:
    """The worker's job listener, measuring each job that ends (before its change is published,
    so a reader told of the completion already sees the new estimate). Best effort."""

    async def on_change(job: RestorationJob) -> None:
        status = JobStatus(job.status)
        if status.terminal:
            try:
                await asyncio.to_thread(
                    estimates.finished, str(job.id), completed=status is JobStatus.COMPLETED, workflow=workflow
                )
            except (redis.RedisError, OSError) as exc:
                log.warning("estimates.not_recorded", extra={"job_id": job.id, "error": repr(exc)})
        await listener(job)

    return on_change
