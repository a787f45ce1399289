"""Direct uploads: the photo's bytes go straight to storage, never through the API.

`create_upload` issues a ticket: a signed PUT URL for exactly the declared number of bytes under
`uploads/{ticket}`, valid for UPLOAD_TTL_SECONDS. `restore_upload` takes the ticket (once), judges
the staged object by the multipart upload's rules (streamed from storage into a spool file, never
whole in memory), then hands it to `gql.jobs.create_job`, whose `store` step is a copy inside the
store to `originals/{job_id}.{ext}`. The download that feeds the judgement also computes the
bytes' SHA-256 (`HashingWriter`), for idempotency keys. The staged object is deleted whether the
photo was accepted or refused. Only when a dependency is unavailable (503) is the ticket given
back and the staged object kept, so the same restore can be retried.

Tickets are rows in PostgreSQL (`models.upload`): the restore takes one with a conditional update,
so two restores of one ticket never both get it, and `tasks.upload_sweep` finds the expired ones
(and their staged objects) with a query.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gql.context import Services
from gql.errors import BadInput, Conflict, NotFound, PayloadTooLarge
from gql.idempotency import Claim, Content, Record, Replay, Undecided, holding, judge, parse_key
from gql.jobs import (
    JudgedPhoto,
    Submission,
    check_pending_ceiling,
    create_job,
    judge_photo,
    parse_denoise,
    replay,
)
from models import repository
from models.repository import DatabaseUnavailable
from models.upload import UploadTicket
from storage.base import ObjectInfo
from storage.errors import ObjectChanged, ObjectNotFound, StorageError
from storage.keys import upload_key
from tasks.queue import QueueUnavailable

log = logging.getLogger("restore.api")

# A staged photo is judged from a spool that stays in memory up to this size, then goes to disk.
SPOOL_MEMORY_BYTES = 1024 * 1024
# `type/subtype` as in RFC 6838 (no parameters): the value is signed and sent as a header, so
# nothing else (spaces, CR/LF, quotes) may get into it.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# Failures after which the same restore may succeed later: the ticket is given back.
_UNAVAILABLE = (StorageError, DatabaseUnavailable, QueueUnavailable)


@dataclass(frozen=True)
class TicketView:
    """What the client needs to send the photo: `method` to `url` with every header in `headers`."""

    id: uuid.UUID
    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


def parse_size(value: object, *, limit: int) -> int:
    """The declared length: a positive integer (BadInput) no larger than `limit` (PayloadTooLarge)."""
    if value is None:
        raise BadInput("size is required: the photo's length in bytes")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadInput("size must be a positive integer: the photo's length in bytes")
    if value > limit:
        raise PayloadTooLarge(f"file too large: {value} bytes, the limit is {limit} bytes")
    return value


def parse_content_type(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value):
        raise BadInput("content_type must be a media type such as image/jpeg")
    return value


async def create_upload(*, services: Services, user_id: str, size: object, content_type: object = None) -> TicketView:
    """A ticket to stage one photo of exactly `size` bytes; single use, expires after the TTL."""
    length = parse_size(size, limit=services.max_upload_bytes)
    media_type = parse_content_type(content_type)
    ticket_id = uuid.uuid4()
    ttl = services.upload_ttl_seconds
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl)
    signed = services.storage.presigned_put_url(
        upload_key(ticket_id), size=length, content_type=media_type, ttl_seconds=ttl
    )
    await repository.create_upload_ticket(
        ticket_id=ticket_id, user_id=user_id, size=length, content_type=media_type, expires_at=expires_at
    )
    log.info("upload.ticket", extra={"ticket_id": str(ticket_id), "user": user_id, "bytes": length})
    return TicketView(id=ticket_id, url=signed.url, method=signed.method, headers=signed.headers, expires_at=expires_at)


async def restore_upload(
    *, services: Services, user_id: str, upload_id: str, denoise: object = None, idempotency_key: object = None
) -> Submission:
    """Submit the photo staged under the caller's ticket, exactly as a multipart upload.

    NotFound: no such ticket, expired, already used, or someone else's (one answer for all).
    Conflict: nothing was sent to the URL yet (the ticket stays usable).

    With an idempotency key, the key is claimed first, naming the upload id: a retry with the
    same key and upload id is answered the key's job even though the ticket is spent by then. A
    key whose job came from other bytes is judged once this upload's digest is known; a replay
    then consumes this ticket and removes its staged object like any restore, and creates nothing.
    """
    started = time.perf_counter()
    value = parse_denoise(denoise, default=services.default_denoise)
    idempotency = parse_key(idempotency_key)
    claim: Claim | None = None
    earlier: Record | None = None
    if idempotency is not None:
        content = Content(denoise=value, upload_id=_normal_id(upload_id))
        outcome = await services.idempotency.claim(user_id=user_id, key=idempotency, content=content)
        if isinstance(outcome, Replay):
            return await replay(services=services, user_id=user_id, job_id=outcome.job_id)
        if isinstance(outcome, Undecided):
            earlier = outcome.record
        else:
            claim = outcome
    async with holding(claim):
        ticket = await _live_ticket(upload_id, user_id)
        key = upload_key(ticket.id)
        staged = await services.storage.stat(key)
        if staged is None:
            raise Conflict("nothing was uploaded for this ticket yet: send the photo to its URL first")
        # Before the ticket is taken, so a user at the ceiling can restore the same upload later.
        if earlier is None:
            await check_pending_ceiling(services=services, user_id=user_id)
        if not await repository.take_upload_ticket(ticket.id, user_id):
            raise NotFound("upload not found")  # another restore took it a moment ago
        keep_staged = False
        try:
            return await _restore_staged(
                services,
                ticket=ticket,
                key=key,
                staged=staged,
                denoise=value,
                started=started,
                claim=claim,
                earlier=earlier,
            )
        except _UNAVAILABLE:
            keep_staged = await _give_back(ticket)
            raise
        finally:
            if not keep_staged:
                await _forget_staged(services, key)


def _normal_id(upload_id: str) -> str:
    """The upload id as tickets spell it, so `ABC…` and `abc…` name one ticket."""
    try:
        return str(uuid.UUID(str(upload_id)))
    except ValueError:
        return str(upload_id)


async def _live_ticket(upload_id: str, user_id: str) -> UploadTicket:
    try:
        ticket_id = uuid.UUID(str(upload_id))
    except ValueError:
        raise NotFound("upload not found") from None
    ticket = await repository.live_upload_ticket(ticket_id, user_id)
    if ticket is None:
        raise NotFound("upload not found")
    return ticket


async def _restore_staged(
    services: Services,
    *,
    ticket: UploadTicket,
    key: str,
    staged: ObjectInfo,
    denoise: float,
    started: float,
    claim: Claim | None,
    earlier: Record | None,
) -> Submission:
    if staged.size != ticket.size:
        raise BadInput(f"the uploaded file has {staged.size} bytes, not the {ticket.size} the ticket declared")
    if staged.size > services.max_upload_bytes:  # the limit may have been lowered since the ticket
        raise PayloadTooLarge(f"file too large: {staged.size} bytes, the limit is {services.max_upload_bytes} bytes")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        hashed = HashingWriter(spool)  # the one read of the staged object also hashes it
        try:
            received = await services.storage.download(key, hashed, if_match=staged.etag)  # type: ignore[arg-type]
        except (ObjectChanged, ObjectNotFound) as exc:
            raise _changed() from exc
        if received != ticket.size:
            raise BadInput(f"the uploaded file has {received} bytes, not the {ticket.size} the ticket declared")
        if earlier is not None:
            same = judge(earlier, Content(denoise=denoise, digest=hashed.digest))
            if same is None:  # content with a digest is always decided
                raise RuntimeError("an earlier idempotent submit could not be compared by its digest")
            return await replay(services=services, user_id=ticket.user_id, job_id=same.job_id)
        info = await judge_photo(services=services, file=spool)  # type: ignore[arg-type]

    async def store(original: str) -> None:
        # Copy the very version that was judged: a PUT that replaced it meanwhile is refused.
        try:
            await services.storage.copy(key, original, content_type=info.content_type, if_match=staged.etag)
        except (ObjectChanged, ObjectNotFound) as exc:
            raise _changed() from exc

    photo = JudgedPhoto(info=info, size=received, store=store, source="direct", digest=hashed.digest)
    view = await create_job(
        services=services, user_id=ticket.user_id, denoise=denoise, photo=photo, started=started, claim=claim
    )
    return Submission(view)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingWriter:
    """A binary file's `write`, hashing (SHA-256) everything written through it."""

    def __init__(self, target: _Writable) -> None:
        self._target = target
        self._sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._sha256.update(data)
        return self._target.write(data)

    @property
    def digest(self) -> str:
        return self._sha256.hexdigest()


def _changed() -> BadInput:
    return BadInput("the uploaded file changed while it was being checked; request a new upload")


async def _give_back(ticket: UploadTicket) -> bool:
    """Make the ticket usable again after a 503; whether that worked (the staged object is kept)."""
    try:
        await repository.give_back_upload_ticket(ticket.id)
    except DatabaseUnavailable:
        log.warning("upload.not_given_back", extra={"ticket_id": str(ticket.id), "note": "the sweep removes it"})
        return False
    return True


async def _forget_staged(services: Services, key: str) -> None:
    with contextlib.suppress(StorageError):
        await services.storage.delete(key)
        return
    log.warning("upload.orphan_object", extra={"key": key, "note": "left for the sweep and the lifecycle rule"})
