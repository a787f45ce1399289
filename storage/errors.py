"""Exceptions raised by the storage boundary.

Callers catch these, never botocore's; each keeps the original error as ``__cause__``.
Messages (``str(exc)``) name the bucket and endpoint but never credentials, so they are safe to
log; they are not for users: a job failed by one shows ``public_message`` (error code
STORAGE_ERROR, retryable), which names no bucket, endpoint or key.

Exception tree::

    JobFailure (models.error_codes)
    └── StorageError                 any failure talking to the object store → STORAGE_ERROR
        ├── StorageUnavailable       endpoint unreachable, timeout, 5xx, missing bucket,
        │                            credential or permission problem (the API answers 503)
        ├── ObjectNotFound           the key does not exist (``.key`` names it)
        └── ObjectChanged            a conditional read or copy found another version of the object

    StorageConfigError(ValueError)
                                 inconsistent storage or URL configuration, raised at
                                 construction only (the settings layer reports it)
"""

from models.error_codes import ErrorCode, JobFailure


class StorageError(JobFailure):
    """Base class for failures of the object store."""

    code = ErrorCode.STORAGE_ERROR
    public_default = "the image storage could not be reached"


class StorageUnavailable(StorageError):
    """The store cannot serve requests now: retry later, report 503."""


class ObjectNotFound(StorageError):
    """No object is stored under ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored at key {key!r}")
        self.key = key


class StorageConfigError(ValueError):
    """Storage or URL settings that cannot work together, e.g. a key id without a key."""


class ObjectChanged(StorageError):
    """The object under ``key`` is no longer the version a condition named (its ETag changed)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the object at key {key!r} changed")
        self.key = key
