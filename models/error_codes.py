"""Why a job failed, as its owner sees it: the contract's error codes and the exception base that
carries one. Dependency-free, so the boundaries (`comfy/`, `storage/`) can import it without the ORM.

    JobFailure                  base of every boundary exception that can fail a job
    ├── comfy.errors.ComfyError
    └── storage.errors.StorageError

A `JobFailure` holds two texts: `str(exc)` is the operator's detail (it may name hosts, URLs,
buckets, endpoints, file paths: it goes to the logs only), `public_message` is what the job's
owner reads in `error_message` (none of those).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """The contract's error codes of failed jobs."""

    COMFYUI_UNAVAILABLE = "COMFYUI_UNAVAILABLE"
    COMFYUI_REJECTED = "COMFYUI_REJECTED"
    COMFYUI_ERROR = "COMFYUI_ERROR"
    JOB_LOST = "JOB_LOST"
    TIMEOUT = "TIMEOUT"
    STORAGE_ERROR = "STORAGE_ERROR"
    INTERNAL = "INTERNAL"

    @property
    def retryable(self) -> bool:
        """The code's default answer to "may submitting the same photo again succeed?"."""
        return self in _RETRYABLE


# COMFYUI_ERROR defaults to false: a node that failed on this photo fails on it again, unless the
# failure says otherwise (out of memory, an interrupted run), which the exception decides.
_RETRYABLE = frozenset({ErrorCode.COMFYUI_UNAVAILABLE, ErrorCode.JOB_LOST, ErrorCode.TIMEOUT, ErrorCode.STORAGE_ERROR})


class JobFailure(Exception):
    """An error that fails the job it happens in, with its code and whether a retry may succeed."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    public_default: ClassVar[str] = "internal error while restoring the image"

    def __init__(self, detail: str, *, public_message: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(detail)
        self.public_message = public_message or self.public_default
        self.retryable = self.code.retryable if retryable is None else retryable
