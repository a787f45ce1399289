"""Idempotency keys: a submit retried with the same `Idempotency-Key` gets the job the first one made.

One Redis record per user and key (one key space across REST, GraphQL and both submit paths):

    claimed  {"state": "claimed", "token", "denoise", "digest" | null, "upload_id" | null}
             a request is creating the job right now; a lease of at most CLAIM_LEASE_SECONDS, so
             a request that died mid-way frees the key by itself
    done     {"state": "done", "job_id", "denoise", "digest", "upload_id" | null}
             the job this key made, remembered IDEMPOTENCY_TTL_SECONDS from its creation

`IdempotencyStore.claim` takes the key atomically (SET NX) before anything is stored. When the key
is taken it waits, boundedly, for the request holding it, then judges the content: the same file
bytes (their SHA-256, never the file name) and the same denoise → `Replay` of that job; anything
else → `Conflict`. A request still holding the key after `CLAIM_WAIT_SECONDS` → `Conflict` too.
The holder either `complete`s its claim with the job or `release`s it on any failure, so a retry
can succeed; both are compare-and-set scripts, so a holder whose lease ran out never overwrites a
newer claim.

A direct upload's bytes are known only once they were downloaded: its claim names the upload id,
and a later request naming the same upload id is the same content (a ticket is single use, and
its job stored exactly the bytes that were judged), so a retry is answered before the spent
ticket would be a 404. A direct upload under another ticket is `Undecided` until its own digest
is known (`judge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gql.errors import BadInput, Conflict
from tasks.queue import QueueUnavailable

log = logging.getLogger("restore.api")

# 1-255 visible ASCII characters (0x21-0x7E), as the contract has it.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
PREFIX = "restoration:idempotency:"
CLAIMED, DONE = "claimed", "done"
# The longest a submit holds a key before its job exists: the body is already read when the key
# is claimed, so this covers judging, one PUT or copy to storage, a row and a queue message, with
# room to spare; a request that died holding it blocks its key no longer than this.
CLAIM_LEASE_SECONDS = 120.0
# How long a request waits for another request holding its key (usually well under a second: the
# holder has its body and only stores and queues) before answering 409.
CLAIM_WAIT_SECONDS = 10.0
# How often a waiter looks at a key claimed by another API process (one in this process wakes it
# at once).
CLAIM_POLL_SECONDS = 0.05

# Replace the record only while it is still the exact claim this request wrote.
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def parse_key(value: object) -> str | None:
    """The `Idempotency-Key` as given (None: no key); BadInput unless 1-255 visible ASCII characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise BadInput("Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)")
    return value


def redis_key(user_id: str, key: str) -> str:
    """Where the record of `user_id`'s `key` lives (hashed: user ids and keys are arbitrary text)."""
    return PREFIX + hashlib.sha256(json.dumps([user_id, key]).encode()).hexdigest()


@dataclass(frozen=True)
class Content:
    """What a keyed submit asks for: compared with what the key's first request asked for."""

    denoise: float
    digest: str | None = None  # hex SHA-256 of the file; None for a direct upload not read yet
    upload_id: str | None = None  # the direct upload's ticket id


@dataclass(frozen=True)
class Record:
    state: str
    denoise: float
    digest: str | None
    upload_id: str | None
    job_id: str | None = None
    token: str | None = None

    @classmethod
    def decode(cls, raw: str | bytes) -> Record:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            state=str(data["state"]),
            denoise=float(data["denoise"]),
            digest=data.get("digest"),
            upload_id=data.get("upload_id"),
            job_id=data.get("job_id"),
            token=data.get("token"),
        )

    def encode(self) -> str:
        return json.dumps(
            {
                "state": self.state,
                "denoise": self.denoise,
                "digest": self.digest,
                "upload_id": self.upload_id,
                "job_id": self.job_id,
                "token": self.token,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Replay:
    """The key already made this job with the same content: answer it, store and queue nothing."""

    job_id: str


@dataclass(frozen=True)
class Undecided:
    """The key made a job from a direct upload under another ticket: the same content only if the
    digests agree, which is known once this request's bytes were read (`judge`)."""

    record: Record


def judge(record: Record, content: Content) -> Replay | None:
    """Replay when `content` is what made `record`'s job; Conflict when it is not; None while it
    cannot be told (a direct upload under another ticket, not read yet)."""
    if record.denoise != content.denoise:
        raise Conflict(
            f"this Idempotency-Key was already used with denoise {record.denoise:g}, not {content.denoise:g}:"
            " use a new key for a different request"
        )
    if record.job_id is None:  # a done record always names its job
        raise RuntimeError("a finished idempotency record names no job")
    if content.upload_id is not None and content.upload_id == record.upload_id:
        return Replay(record.job_id)
    if content.digest is None:
        return None
    if content.digest != record.digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different file: use a new key for a different request"
        )
    return Replay(record.job_id)


class Claim:
    """The key held by this request until it `complete`s (with its job) or `release`s it."""

    def __init__(self, store: IdempotencyStore, *, name: str, value: str, content: Content) -> None:
        self._store = store
        self.name = name
        self.value = value
        self.content = content

    async def complete(self, *, job_id: uuid.UUID | str, digest: str) -> None:
        """Record the job; from now on the key answers it. Best effort: the job is committed and
        queued already, so a Redis failure here is logged, not answered (the claim's lease ends)."""
        done = Record(
            state=DONE,
            denoise=self.content.denoise,
            digest=digest,
            upload_id=self.content.upload_id,
            job_id=str(job_id),
        )
        try:
            kept = await self._store.replace(self.name, self.value, done.encode())
        except QueueUnavailable:
            log.warning("idempotency.not_recorded", extra={"job_id": str(job_id)})
            return
        finally:
            self._store.wake(self.name)
        if not kept:
            log.warning("idempotency.lease_lost", extra={"job_id": str(job_id)})

    async def release(self) -> None:
        """Forget the claim (the submit failed), so a retry with the key can succeed."""
        try:
            await self._store.remove(self.name, self.value)
        except QueueUnavailable:
            log.warning("idempotency.not_released", extra={"note": "the claim's lease ends it"})
        finally:
            self._store.wake(self.name)


@contextlib.asynccontextmanager
async def holding(claim: Claim | None) -> AsyncIterator[None]:
    """Release `claim` when the block fails in any way (a refusal, an outage, a client gone)."""
    try:
        yield
    except BaseException:
        if claim is not None:
            # Shielded: a submit cancelled mid-way (client gone, shutdown) still frees its key.
            await asyncio.shield(claim.release())
        raise


class IdempotencyStore:
    """The records of every user's keys, in Redis (an async client of the API's own)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_seconds: float,
        wait_seconds: float = CLAIM_WAIT_SECONDS,
        poll_seconds: float = CLAIM_POLL_SECONDS,
    ) -> None:
        self._client = client
        self.ttl_seconds = ttl_seconds
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        # Keys claimed by requests in this process: a waiter here wakes the moment they finish.
        self._local: dict[str, asyncio.Event] = {}
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    async def claim(self, *, user_id: str, key: str, content: Content) -> Claim | Replay | Undecided:
        """Take `key` for this request, or tell what it already made (see the module docstring).
        Conflict: other content, or the key is still held after the wait."""
        name = redis_key(user_id, key)
        lease_ms = max(1, int(min(CLAIM_LEASE_SECONDS, self.ttl_seconds) * 1000))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        while True:
            mine = Record(
                state=CLAIMED,
                denoise=content.denoise,
                digest=content.digest,
                upload_id=content.upload_id,
                token=uuid.uuid4().hex,
            ).encode()
            if await self._call(self._client.set(name, mine, nx=True, px=lease_ms)):
                self._local.setdefault(name, asyncio.Event())
                return Claim(self, name=name, value=mine, content=content)
            raw = await self._call(self._client.get(name))
            if raw is None:
                continue  # released or expired a moment ago: try to take it again
            record = Record.decode(raw)
            if record.state == DONE:
                return judge(record, content) or Undecided(record)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Conflict("a request with this Idempotency-Key is still being processed: retry in a moment")
            await self._pause(name, min(self._poll_seconds, remaining))

    async def _pause(self, name: str, seconds: float) -> None:
        event = self._local.get(name)
        if event is None:
            await asyncio.sleep(seconds)  # held by another API process: look again shortly
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    def wake(self, name: str) -> None:
        event = self._local.pop(name, None)
        if event is not None:
            event.set()

    async def replace(self, name: str, expected: str, value: str) -> bool:
        ttl_ms = max(1, int(self.ttl_seconds * 1000))
        return bool(await self._call(self._complete(keys=[name], args=[expected, value, ttl_ms])))

    async def remove(self, name: str, expected: str) -> bool:
        return bool(await self._call(self._release(keys=[name], args=[expected])))

    async def _call(self, operation: Any) -> Any:
        try:
            return await operation
        except (RedisError, OSError) as exc:
            raise QueueUnavailable() from exc
