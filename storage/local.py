"""Object store on the local disk, for `restoration dev`: same keys as S3, served by the API itself.

Objects live under `root/<key>`. Readers get URLs of the form
`{public_url}/files/<key>?expires=<unix time>&signature=<HMAC-SHA256>`; the API's `/files` route
(`serve_object`) refuses a tampered or expired signature with 403. File I/O runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from storage.errors import ObjectNotFound, StorageConfigError, StorageUnavailable

FILES_PREFIX = "/files/"
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}


class LocalStorage:
    """An `ObjectStore` on the local disk with HMAC-signed, expiring URLs."""

    def __init__(
        self, *, root: Path, public_url: str, signing_key: bytes, clock: Callable[[], float] = time.time
    ) -> None:
        if len(signing_key) < 16:
            raise StorageConfigError("the local storage signing key must be at least 16 bytes")
        self.root = root.resolve()
        self._public_url = public_url.rstrip("/")
        self._key = signing_key
        self._clock = clock

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not key or self.root not in path.parents:
            raise ObjectNotFound(key)
        return path

    async def put_file(self, key: str, fileobj: BinaryIO, *, content_type: str) -> None:
        await self._run(self._write, key, lambda out: shutil.copyfileobj(fileobj, out))

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        await self._run(self._write, key, lambda out: out.write(data))

    async def get_bytes(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} failed: {exc.strerror}") from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def ping(self) -> None:
        """Return when objects can be written: the root exists (created on first use) and is writable."""
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} cannot be created: {exc.strerror}") from exc
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise StorageUnavailable(f"local storage at {self.root} is not writable")

    def presigned_get_url(self, key: str, *, ttl_seconds: int) -> str:
        expires = int(self._clock()) + ttl_seconds
        return f"{self._public_url}{FILES_PREFIX}{quote(key)}?expires={expires}&signature={self._sign(key, expires)}"

    def verify(self, key: str, expires: str, signature: str) -> bool:
        """Whether a URL's signature is genuine and not expired."""
        if not expires.isdigit() or int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._sign(key, int(expires)), signature)

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half an image.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
            write(out)  # type: ignore[arg-type]  # a binary file object, as BinaryIO means
        os.replace(out.name, path)

    async def _run(self, func: Callable[..., None], *args: object) -> None:
        try:
            await asyncio.to_thread(func, *args)
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} failed: {exc.strerror}") from exc


def object_route(storage: LocalStorage) -> Callable[[Request], Awaitable[Response]]:
    """The `GET /files/{key}` endpoint serving objects at their signed URLs."""

    async def serve_object(request: Request) -> Response:
        key = request.path_params["key"]
        params = request.query_params
        if not storage.verify(key, params.get("expires", ""), params.get("signature", "")):
            return JSONResponse({"detail": "invalid or expired signature"}, status_code=403)
        try:
            path = storage.path_of(key)
        except ObjectNotFound:
            return JSONResponse({"detail": "not found"}, status_code=404)
        if not await asyncio.to_thread(path.is_file):
            return JSONResponse({"detail": "not found"}, status_code=404)
        return FileResponse(path, media_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    return serve_object
