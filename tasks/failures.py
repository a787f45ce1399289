"""Why a job failed, as the contract's error codes: the owner's message and the operator's detail.

The boundary exceptions carry their own code (`JobFailure`: ComfyUI's COMFYUI_UNAVAILABLE,
COMFYUI_REJECTED, COMFYUI_ERROR, JOB_LOST; storage's STORAGE_ERROR); the pipeline adds TIMEOUT
(the deadline), COMFYUI_UNAVAILABLE (no server reachable in time), JOB_LOST (a worker gone) and
INTERNAL (an image we could not prepare or clean, or a bug).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from models.error_codes import ErrorCode, JobFailure

log = logging.getLogger("restore.pipeline")

# What the job's owner reads for the failures the pipeline itself names.
INTERNAL_MESSAGE = "internal error while restoring the image"
IMAGE_NOT_PREPARED = "internal error: the photo could not be prepared for restoration"
WORKER_LOST = "worker lost: the job's worker stopped and ComfyUI has no record of it"
WORKER_LOST_UNREACHABLE = "worker lost: the job's worker stopped and ComfyUI could not be reached to recover the result"
ORIGINAL_UNREADABLE = "the original photo could not be read from storage"
RESULT_NOT_STORED = "the restored image could not be saved to storage"
NO_SERVER = "no restoration server could be reached in time; please try again later"


@dataclass(frozen=True)
class Failure:
    """Why a job failed: the contract's code, whether a new submission may succeed, the owner's
    message, and the operator's detail (logged with the job id, never shown to the owner)."""

    code: ErrorCode
    retryable: bool
    message: str
    detail: str

    @classmethod
    def of(cls, exc: JobFailure) -> Failure:
        return cls(code=exc.code, retryable=exc.retryable, message=exc.public_message, detail=str(exc))

    @classmethod
    def named(cls, code: ErrorCode, message: str, *, detail: str | None = None) -> Failure:
        return cls(code=code, retryable=code.retryable, message=message, detail=detail or message)


def crashed(job_id: str, exc: BaseException) -> Failure:
    """A bug of ours: the traceback goes to the log, the owner reads that it was ours."""
    log.error("restore.crashed", extra={"job_id": job_id, "detail": repr(exc)}, exc_info=exc)
    return Failure.named(ErrorCode.INTERNAL, INTERNAL_MESSAGE, detail=repr(exc))


def no_server(*, tried: list[str], seconds: float) -> Failure:
    """No server answered for the whole time the job may wait (the servers are named in the log only)."""
    count = len(tried)
    return Failure.named(
        ErrorCode.COMFYUI_UNAVAILABLE,
        f"{NO_SERVER} ({count} server{'s' if count != 1 else ''} tried for {seconds:g} s)",
        detail=f"no reachable ComfyUI server among {', '.join(tried)} for {seconds:g} s",
    )
