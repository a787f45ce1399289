"""Staged direct uploads do not pile up: once a ticket expired (its signed URL no longer works),
whatever is still staged under `uploads/{ticket}` is deleted, then the ticket.

The restore deletes the staged object in every outcome, so this only catches what is left: a
photo sent but never restored, a delete that failed, or a second PUT after the restore while the
URL was still valid. On S3 a bucket lifecycle rule on `uploads/` is the backstop (README). Every
worker (and `restoration dev`) runs the sweep; deleting twice is harmless.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from models import repository
from storage.base import ObjectStore
from storage.errors import StorageError
from storage.keys import upload_key
from tasks import periodic

log = logging.getLogger("restore.uploads")

# Expired tickets wait at most this long for the sweep; staged objects cost only storage meanwhile.
UPLOAD_SWEEP_INTERVAL_SECONDS = 60.0


async def sweep_expired_uploads(*, storage: ObjectStore) -> int:
    """Delete the staged objects and rows of expired tickets; how many tickets were removed.

    A ticket whose object could not be deleted is kept for the next round.
    """
    removed = 0
    for ticket in await repository.expired_upload_tickets():
        key = upload_key(ticket.id)
        try:
            await storage.delete(key)
        except StorageError as exc:
            log.warning("upload.sweep_skipped", extra={"key": key, "detail": str(exc)})
            continue
        await repository.delete_upload_ticket(ticket.id)
        removed += 1
    if removed:
        log.info("upload.swept", extra={"tickets": removed})
    return removed


def sweeping_uploads(
    *, storage: ObjectStore, interval: float = UPLOAD_SWEEP_INTERVAL_SECONDS
) -> contextlib.AbstractAsyncContextManager[None]:
    """`sweep_expired_uploads` every `interval` seconds in the background for the duration of the block."""
    return periodic.running(
        interval, functools.partial(sweep_expired_uploads, storage=storage), log=log, event="upload.sweep"
    )
