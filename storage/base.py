"""The object-store interface shared by the S3 store and the embedded local store."""

from typing import BinaryIO, Protocol


class ObjectStore(Protocol):
    """Stores bytes under string keys such as ``originals/<job_id>.jpg``.

    Every method raises :class:`storage.errors.StorageError` subclasses only.
    """

    async def put_file(self, key: str, fileobj: BinaryIO, *, content_type: str) -> None:
        """Store the rest of ``fileobj`` (from its current position) under ``key``."""
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object already there."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """Return the object's content; ``ObjectNotFound`` when there is none."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether an object is stored under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; ``StorageUnavailable`` otherwise (readiness)."""
        ...

    def presigned_get_url(self, key: str, *, ttl_seconds: int) -> str:
        """Return a URL that lets anyone read the object for ``ttl_seconds``; no I/O."""
        ...
