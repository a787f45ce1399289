"""Every read and state change of a job, as small async functions over the ORM.

State changes are conditional updates (`WHERE status = ...`), so two workers, or a worker and the
reconciler, can never both move the same job: zero rows updated means someone else has it.
A database that cannot take the operation now (unreachable, locked, full, read-only, out of
connections, shutting down) surfaces as `DatabaseUnavailable` (the API answers 503); every other
database error (a bad query, a broken constraint) is a bug and propagates as it is.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from tortoise.exceptions import DBConnectionError
from tortoise.expressions import F, Q

from models.error_codes import ErrorCode
from models.job import JobStatus, RestorationJob
from models.upload import UploadTicket

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    DBConnectionError,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # The connection's protocol state broke (its backend was terminated mid-operation): lost link.
    asyncpg.InternalClientError,
)
# SQLSTATEs of a PostgreSQL that cannot take the statement now, whatever the statement:
# class 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
# connections), 57P operator intervention (admin/crash shutdown, cannot connect now), and 25006
# read-only transaction (a standby, or `default_transaction_read_only` set by an operator).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P", "25006")
# Words of the sqlite3 OperationalErrors that say the file cannot be written now (another
# writer holds the lock, the disk failed or is full, the file became read-only or cannot be
# opened, e.g. out of file descriptors), unlike "no such table" or a syntax error.
_UNAVAILABLE_SQLITE_WORDS = ("locked", "busy", "disk i/o", "full", "readonly", "read-only", "unable to open")


def _cannot_take_it_now(exc: BaseException) -> bool:
    """Whether `exc`, or a driver error it wraps, means "the database cannot take this now".

    Tortoise wraps driver errors in its own (`OperationalError`, `TransactionManagementError`),
    with the driver's exception as the cause, the context, or the first argument."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, _CONNECTION_ERRORS):
            return True
        if isinstance(error, asyncpg.PostgresError):
            sqlstate = str(getattr(error, "sqlstate", "") or "")
            if sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
                return True
        if isinstance(error, sqlite3.OperationalError):
            message = str(error).lower()
            if any(word in message for word in _UNAVAILABLE_SQLITE_WORDS):
                return True
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
        pending.extend(arg for arg in error.args if isinstance(arg, BaseException))
    return False


class DatabaseUnavailable(Exception):
    """The database cannot be reached or cannot take the operation now; it may be retried later."""

    def __init__(self) -> None:
        super().__init__("database unavailable")


@contextlib.contextmanager
def _db_errors() -> Iterator[None]:
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if _cannot_take_it_now(exc):
            raise DatabaseUnavailable() from exc
        raise


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Cursor:
    """Position in a user's newest-first job list."""

    created_at: datetime
    id: uuid.UUID


async def create_job(*, job_id: uuid.UUID, user_id: str, denoise: float, original_key: str) -> RestorationJob:
    with _db_errors():
        return await RestorationJob.create(
            id=job_id, user_id=user_id, denoise=denoise, original_key=original_key, status=JobStatus.PENDING
        )


async def count_pending_jobs(user_id: str) -> int:
    """How many of the user's jobs are pending: one COUNT over the (user_id, created_at) index."""
    with _db_errors():
        return await RestorationJob.filter(user_id=user_id, status=JobStatus.PENDING).count()


async def delete_job(job_id: uuid.UUID) -> None:
    with _db_errors():
        await RestorationJob.filter(id=job_id).delete()


async def get_job(job_id: uuid.UUID | str) -> RestorationJob | None:
    with _db_errors():
        return await RestorationJob.get_or_none(id=job_id)


async def get_user_job(job_id: uuid.UUID, user_id: str) -> RestorationJob | None:
    """The job when it exists AND belongs to the user; None otherwise (indistinguishable)."""
    with _db_errors():
        return await RestorationJob.get_or_none(id=job_id, user_id=user_id)


async def list_user_jobs(
    user_id: str, *, first: int, after: Cursor | None = None, status: JobStatus | None = None
) -> tuple[list[RestorationJob], bool]:
    """Up to `first` of the user's jobs, newest first, and whether more follow."""
    query = RestorationJob.filter(user_id=user_id)
    if status is not None:
        query = query.filter(status=status)
    if after is not None:
        query = query.filter(Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.id))
    with _db_errors():
        rows = await query.order_by("-created_at", "-id").limit(first + 1)
    return rows[:first], len(rows) > first


async def user_jobs_changed_since(user_id: str, since: datetime, *, limit: int) -> list[RestorationJob]:
    """The user's jobs changed at or after `since`, oldest change first; the `limit` latest at most."""
    with _db_errors():
        rows = await RestorationJob.filter(user_id=user_id, updated_at__gte=since).order_by("-updated_at").limit(limit)
    return rows[::-1]


async def claim_job(job_id: uuid.UUID | str, *, worker_id: str, lease_seconds: float) -> RestorationJob | None:
    """pending → processing for this worker; None when the job is not pending (not ours)."""
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status=JobStatus.PENDING).update(
            seq=F("seq") + 1,
            status=JobStatus.PROCESSING,
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            progress=0.0,
            updated_at=now,
        )
        if not updated:
            return None
        return await RestorationJob.get(id=job_id)


async def set_progress(job_id: uuid.UUID | str, progress: float) -> RestorationJob | None:
    """Record progress of a processing job; None when the job is no longer processing."""
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status=JobStatus.PROCESSING).update(
            progress=progress, updated_at=_now(), seq=F("seq") + 1
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def complete_job(job_id: uuid.UUID | str, *, processed_key: str) -> RestorationJob | None:
    """processing → completed; None when the job was settled by someone else meanwhile."""
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status=JobStatus.PROCESSING).update(
            seq=F("seq") + 1,
            status=JobStatus.COMPLETED,
            processed_key=processed_key,
            progress=None,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def fail_job(
    job_id: uuid.UUID | str,
    *,
    message: str,
    code: ErrorCode,
    retryable: bool,
    only_from: tuple[JobStatus, ...] = (JobStatus.PENDING, JobStatus.PROCESSING),
) -> RestorationJob | None:
    """pending/processing (or just the statuses in `only_from`) → failed with the owner's message
    and the error code; None when the job was in none of them."""
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status__in=list(only_from)).update(
            seq=F("seq") + 1,
            status=JobStatus.FAILED,
            error_message=message,
            error_code=code,
            retryable=retryable,
            progress=None,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def cancel_job(job_id: uuid.UUID, user_id: str) -> RestorationJob | None:
    """pending/processing → cancelled, for the job's owner; None when the job is not the user's
    or is already finished (the caller re-reads to tell which).

    Conditional like the claim and every other terminal transition, so a cancel racing the
    worker's `complete_job` (or `fail_job`) has exactly one winner. The row keeps `worker_id` and
    `comfy_server`: they say where the prompt went, for the worker withdrawing it and for operators;
    a processing job also keeps its lease, cleared by `prompt_withdrawn` once the prompt is out of
    ComfyUI (a lease left to run out means its worker died first: the reconciler withdraws it).
    """
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(
            id=job_id, user_id=user_id, status__in=[JobStatus.PENDING, JobStatus.PROCESSING]
        ).update(
            seq=F("seq") + 1,
            status=JobStatus.CANCELLED,
            progress=None,
            finished_at=now,
            updated_at=now,
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def job_status(job_id: uuid.UUID | str) -> JobStatus | None:
    """The job's status alone (one primary-key read, for the worker's watch while it runs it);
    None when the job does not exist."""
    with _db_errors():
        rows: list[Any] = await RestorationJob.filter(id=job_id).limit(1).values_list("status", flat=True)
    return JobStatus(rows[0]) if rows else None


async def renew_lease(job_id: uuid.UUID | str, *, worker_id: str, lease_seconds: float) -> bool:
    """The worker still holds the job; False when it no longer does (settled or taken over)."""
    with _db_errors():
        return bool(
            await RestorationJob.filter(id=job_id, status=JobStatus.PROCESSING, worker_id=worker_id).update(
                lease_expires_at=_now() + timedelta(seconds=lease_seconds)
            )
        )


async def unclaim_job(job_id: uuid.UUID | str, *, worker_id: str) -> RestorationJob | None:
    """processing → pending again, for a job whose prompt was never sent (its server vanished
    first); None when the job is no longer this worker's."""
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status=JobStatus.PROCESSING, worker_id=worker_id).update(
            seq=F("seq") + 1,
            status=JobStatus.PENDING,
            worker_id=None,
            started_at=None,
            lease_expires_at=None,
            progress=None,
            comfy_server=None,
            updated_at=now,
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def record_server(job_id: uuid.UUID | str, *, worker_id: str, server: str) -> bool:
    """Note which ComfyUI server the job's prompt goes to (before it is sent), for settling later."""
    with _db_errors():
        return bool(
            await RestorationJob.filter(id=job_id, status=JobStatus.PROCESSING, worker_id=worker_id).update(
                comfy_server=server
            )
        )


async def release_leases(worker_id: str) -> int:
    """Hand a stopping worker's unfinished jobs to the reconciler at once (lease expired now)."""
    with _db_errors():
        return await RestorationJob.filter(status=JobStatus.PROCESSING, worker_id=worker_id).update(
            lease_expires_at=_now()
        )


async def orphaned_jobs(*, limit: int = 100) -> list[RestorationJob]:
    """Processing jobs whose worker stopped renewing its lease."""
    with _db_errors():
        return await RestorationJob.filter(status=JobStatus.PROCESSING, lease_expires_at__lt=_now()).limit(limit)


async def take_over(
    job_id: uuid.UUID | str, *, worker_id: str, lease_seconds: float, status: JobStatus = JobStatus.PROCESSING
) -> RestorationJob | None:
    """Claim a job whose lease ran out (an orphan to settle, or a cancelled job's prompt to
    withdraw); None when someone else holds a live lease on it."""
    now = _now()
    with _db_errors():
        updated = await RestorationJob.filter(id=job_id, status=status, lease_expires_at__lt=now).update(
            worker_id=worker_id, lease_expires_at=now + timedelta(seconds=lease_seconds)
        )
        return await RestorationJob.get(id=job_id) if updated else None


async def unwithdrawn_cancelled_jobs(*, cancelled_within: float, limit: int = 100) -> list[RestorationJob]:
    """Jobs cancelled in the last `cancelled_within` seconds whose prompt may still be in ComfyUI
    and whose worker let its lease run out (the `(status, updated_at)` index bounds the read to
    recent cancels, however many cancelled jobs the table holds)."""
    now = _now()
    with _db_errors():
        return await RestorationJob.filter(
            status=JobStatus.CANCELLED,
            updated_at__gte=now - timedelta(seconds=cancelled_within),
            lease_expires_at__lt=now,
        ).limit(limit)


async def prompt_withdrawn(job_id: uuid.UUID | str) -> None:
    """A cancelled job's prompt is out of ComfyUI (or never got there): nothing more is owed."""
    with _db_errors():
        await RestorationJob.filter(id=job_id, status=JobStatus.CANCELLED).update(lease_expires_at=None)


async def pending_jobs(*, older_than: float, limit: int = 1000) -> list[RestorationJob]:
    """Pending jobs created more than `older_than` seconds ago."""
    with _db_errors():
        return (
            await RestorationJob.filter(status=JobStatus.PENDING, created_at__lt=_now() - timedelta(seconds=older_than))
            .order_by("created_at")
            .limit(limit)
        )


# -- direct-upload tickets -------------------------------------------------------------------------


async def create_upload_ticket(
    *, ticket_id: uuid.UUID, user_id: str, size: int, content_type: str | None, expires_at: datetime
) -> UploadTicket:
    with _db_errors():
        return await UploadTicket.create(
            id=ticket_id, user_id=user_id, size=size, content_type=content_type, expires_at=expires_at
        )


async def live_upload_ticket(ticket_id: uuid.UUID, user_id: str) -> UploadTicket | None:
    """The user's ticket when it is unused and not expired; None otherwise (indistinguishable)."""
    with _db_errors():
        return await UploadTicket.get_or_none(id=ticket_id, user_id=user_id, used_at=None, expires_at__gt=_now())


async def take_upload_ticket(ticket_id: uuid.UUID, user_id: str) -> bool:
    """unused → used, for the one restore that gets it; False when it is used, expired or not the user's."""
    now = _now()
    with _db_errors():
        taken = await UploadTicket.filter(id=ticket_id, user_id=user_id, used_at=None, expires_at__gt=now).update(
            used_at=now
        )
    return bool(taken)


async def give_back_upload_ticket(ticket_id: uuid.UUID) -> None:
    """used → unused, when the restore could not finish because a dependency was unavailable."""
    with _db_errors():
        await UploadTicket.filter(id=ticket_id).update(used_at=None)


async def expired_upload_tickets(*, limit: int = 1000) -> list[UploadTicket]:
    """Tickets past their expiry (used or not), oldest first: their signed URLs no longer work."""
    with _db_errors():
        return await UploadTicket.filter(expires_at__lte=_now()).order_by("expires_at").limit(limit)


async def delete_upload_ticket(ticket_id: uuid.UUID) -> None:
    with _db_errors():
        await UploadTicket.filter(id=ticket_id).delete()
