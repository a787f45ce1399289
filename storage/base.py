"""The object-store interface shared by the S3 store and the embedded local store."""

from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class SignedUpload:
    """How a client sends one object straight to the store: ``method`` to ``url`` with exactly
    the declared number of bytes and every header in ``headers``."""

    url: str
    method: str
    headers: dict[str, str]


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells: the object's length, and a tag that changes whenever it is written again."""

    size: int
    etag: str


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

    def presigned_put_url(self, key: str, *, size: int, content_type: str | None, ttl_seconds: int) -> SignedUpload:
        """A URL that lets anyone store exactly ``size`` bytes (of ``content_type`` when given) at
        ``key`` for ``ttl_seconds``; the signature covers the length (and the type). No I/O."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's length and version tag; None when there is no object."""
        ...

    async def download(self, key: str, fileobj: BinaryIO, *, if_match: str) -> int:
        """Write the object's content to ``fileobj`` in chunks (never whole in memory) and return
        the bytes written; ``ObjectChanged`` when its version is not ``if_match``, ``ObjectNotFound``
        when it is gone."""
        ...

    async def copy(self, source: str, destination: str, *, content_type: str, if_match: str) -> None:
        """Copy ``source`` to ``destination`` inside the store (the bytes do not pass through us),
        only when ``source`` is still the version ``if_match``; ``ObjectChanged`` otherwise."""
        ...
