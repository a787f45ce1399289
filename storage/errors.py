"""Exceptions raised by the storage boundary.

Callers catch these, never botocore's; each keeps the original error as ``__cause__``.
Messages name the bucket and endpoint but never credentials, so they are safe to log.

Exception tree::

    StorageError                 any failure talking to the object store
    ├── StorageUnavailable       endpoint unreachable, timeout, 5xx, missing bucket,
    │                            credential or permission problem (the API answers 503)
    └── ObjectNotFound           the key does not exist (``.key`` names it)

    StorageConfigError(ValueError)
                                 inconsistent storage or URL configuration, raised at
                                 construction only (the settings layer reports it)
"""


class StorageError(Exception):
    """Base class for failures of the object store."""


class StorageUnavailable(StorageError):
    """The store cannot serve requests now: retry later, report 503."""


class ObjectNotFound(StorageError):
    """No object is stored under ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored at key {key!r}")
        self.key = key


class StorageConfigError(ValueError):
    """Storage or URL settings that cannot work together, e.g. a key id without a key."""
