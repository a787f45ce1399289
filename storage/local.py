"""Object store on the local disk, for `restoration dev`: same keys as S3, served by the API itself.

Objects live under `root/<key>`. Readers get URLs of the form
`{public_url}/files/<key>?expires=<unix time>&signature=<HMAC-SHA256>`; the API's `/files` route
(`serve_object`) refuses a tampered or expired signature with 403. Direct uploads get signed PUT
URLs on the same path (`...&length=<bytes>[&type=<content type>]&signature=...`), received by
`SignedPutMiddleware` ahead of the API's body limits: it refuses a tampered or expired signature
and a Content-Length or Content-Type other than the signed one, and streams the body to disk.
`LoopbackObjectCors` lets a page opened under another loopback name of the same server (`localhost`
for `127.0.0.1`) use those URLs. File I/O runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from storage.base import ObjectInfo, SignedUpload
from storage.errors import ObjectChanged, ObjectNotFound, StorageConfigError, StorageUnavailable

FILES_PREFIX = "/files/"
# A signed URL's numbers are a Unix time and a byte count: 15 digits are far beyond both.
URL_NUMBER_DIGITS = 15
# A received upload is written to disk in blocks of this size (one thread hop per block).
PUT_WRITE_BLOCK = 1024 * 1024
# Copies between local files (downloads of staged uploads, server-side copies) go in these chunks.
COPY_CHUNK = 1024 * 1024
# The names every browser resolves to this machine itself, whatever its hosts file says.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Seconds a browser may remember a preflight's answer for the object routes.
CORS_MAX_AGE = 600
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}


T = TypeVar("T")


def _unix_time(value: str) -> int | None:
    """A signed URL's number (`expires`, `length`): ASCII digits only, at most `URL_NUMBER_DIGITS`
    of them, so superscripts, other scripts' digits and 5,000-digit numbers are refused."""
    if not value or len(value) > URL_NUMBER_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _etag(status: os.stat_result) -> str:
    """Every write is a new file renamed into place, so inode + mtime + size name one version."""
    return f"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"


def _copy_chunks(source: BinaryIO, target: BinaryIO) -> int:
    copied = 0
    while chunk := source.read(COPY_CHUNK):
        target.write(chunk)
        copied += len(chunk)
    return copied


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
        when = _unix_time(expires)
        if when is None or when < self._clock():
            return False
        return hmac.compare_digest(self._sign(key, when), signature)

    def presigned_put_url(self, key: str, *, size: int, content_type: str | None, ttl_seconds: int) -> SignedUpload:
        """A signed, expiring PUT URL for exactly ``size`` bytes (and ``content_type`` when given)."""
        expires = int(self._clock()) + ttl_seconds
        query: dict[str, str | int] = {"expires": expires, "length": size}
        headers = {"Content-Length": str(size)}
        if content_type is not None:
            query["type"] = content_type
            headers["Content-Type"] = content_type
        query["signature"] = self._sign_put(key, expires, size, content_type)
        return SignedUpload(
            url=f"{self._public_url}{FILES_PREFIX}{quote(key)}?{urlencode(query)}", method="PUT", headers=headers
        )

    def verify_put(self, key: str, *, expires: str, length: str, content_type: str | None, signature: str) -> bool:
        """Whether a PUT URL's signature is genuine (for this length and type) and not expired."""
        when, size = _unix_time(expires), _unix_time(length)
        if when is None or size is None or when < self._clock():
            return False
        expected = self._sign_put(key, when, size, content_type)
        return hmac.compare_digest(expected, signature)

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self.path_of(key)
        try:
            status = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} failed: {exc.strerror}") from exc
        return ObjectInfo(size=status.st_size, etag=_etag(status))

    async def download(self, key: str, fileobj: BinaryIO, *, if_match: str) -> int:
        def copy_out() -> int:
            with self._open_version(key, if_match) as source:
                return _copy_chunks(source, fileobj)

        return await self._io(copy_out)

    async def copy(self, source: str, destination: str, *, content_type: str, if_match: str) -> None:
        def copy_version() -> None:
            # Read from the descriptor whose version was checked: a PUT that replaces the file
            # meanwhile does not change what is copied.
            with self._open_version(source, if_match) as original:
                self._write(destination, lambda out: _copy_chunks(original, out))

        await self._io(copy_version)

    def _open_version(self, key: str, etag: str) -> BinaryIO:
        try:
            fp = self.path_of(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        if _etag(os.fstat(fp.fileno())) != etag:
            fp.close()
            raise ObjectChanged(key)
        return fp

    async def _io(self, func: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(func)
        except (ObjectNotFound, ObjectChanged):
            raise
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} failed: {exc.strerror}") from exc

    def _sign_put(self, key: str, expires: int, length: int, content_type: str | None) -> str:
        # "PUT" first, so a signature for reading can never be replayed for writing, or back.
        message = f"PUT\n{key}\n{expires}\n{length}\n{content_type or ''}"
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half an image.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
            try:
                write(out)  # type: ignore[arg-type]  # a binary file object, as BinaryIO means
            except BaseException:  # disk full, source gone: no half-written file stays behind
                out.close()
                Path(out.name).unlink(missing_ok=True)
                raise
        os.replace(out.name, path)

    async def _run(self, func: Callable[..., None], *args: object) -> None:
        try:
            await asyncio.to_thread(func, *args)
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} failed: {exc.strerror}") from exc


def object_route(storage: LocalStorage) -> Callable[[Request], Awaitable[Response]]:
    """The `GET /files/{key}` endpoint serving objects at their signed URLs.

    An image is cached privately by the browser for what is left of its URL's lifetime (never by a
    shared cache: the URL is the only key to it), and served as what it is, never sniffed."""

    async def serve_object(request: Request) -> Response:
        key = request.path_params["key"]
        params = request.query_params
        expires = _unix_time(params.get("expires", ""))
        if expires is None or not storage.verify(key, str(expires), params.get("signature", "")):
            return JSONResponse({"detail": "invalid or expired signature"}, status_code=403)
        try:
            path = storage.path_of(key)
        except ObjectNotFound:
            return JSONResponse({"detail": "not found"}, status_code=404)
        if not await asyncio.to_thread(path.is_file):
            return JSONResponse({"detail": "not found"}, status_code=404)
        remaining = max(0, expires - int(time.time()))
        headers = {"Cache-Control": f"private, max-age={remaining}", "X-Content-Type-Options": "nosniff"}
        return FileResponse(
            path, media_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"), headers=headers
        )

    return serve_object


class SignedPutMiddleware:
    """Receives `PUT /files/<key>` at the URLs `LocalStorage.presigned_put_url` signs.

    It sits outside the API's body limits, because the signed length is this request's limit:
    a missing Content-Length is 411; a tampered or expired signature, or a Content-Length or
    Content-Type other than the signed one, is 403 (as S3 answers); the body is streamed to a
    temporary file beside the object (never whole in memory) and renamed into place only when
    exactly the signed number of bytes arrived. A client that disconnects early leaves nothing.
    Every other request goes on to the API.
    """

    def __init__(self, app: ASGIApp, *, storage: LocalStorage) -> None:
        self.app = app
        self.storage = storage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "PUT" or not scope["path"].startswith(FILES_PREFIX):
            await self.app(scope, receive, send)
            return
        status, detail, etag = await self._receive(scope, receive)
        payload = json.dumps({"detail": detail}).encode() if detail else b""
        headers = [(b"content-length", str(len(payload)).encode())]
        if detail:
            headers.append((b"content-type", b"application/json"))
            headers.append((b"connection", b"close"))  # the body may not have been read
        if etag:
            headers.append((b"etag", f'"{etag}"'.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _receive(self, scope: Scope, receive: Receive) -> tuple[int, str, str]:
        """(status, detail for a refusal, the stored version's tag)."""
        key = scope["path"][len(FILES_PREFIX) :]
        query = {name: values[0] for name, values in parse_qs(scope["query_string"].decode("latin-1")).items()}
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        signed_type = query.get("type")
        if not self.storage.verify_put(
            key,
            expires=query.get("expires", ""),
            length=query.get("length", ""),
            content_type=signed_type,
            signature=query.get("signature", ""),
        ):
            return 403, "invalid or expired signature", ""
        length = int(query["length"])
        if "content-length" not in headers:
            return 411, "Content-Length is required", ""
        if headers["content-length"] != str(length):
            return 403, f"Content-Length must be the signed length, {length}", ""
        if signed_type is not None and headers.get("content-type") != signed_type:
            return 403, "Content-Type must be the signed type", ""
        try:
            path = self.storage.path_of(key)
            etag = await self._store(path, receive, length=length)
        except (ObjectNotFound, OSError):
            return 500, "the upload could not be stored", ""
        if etag is None:
            return 400, f"the body is not the signed length, {length} bytes", ""
        return 200, "", etag

    async def _store(self, path: Path, receive: Receive, *, length: int) -> str | None:
        """Stream the body to disk; the new version's tag, or None (nothing kept) when the body
        ended early or ran past ``length``."""
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        descriptor, temporary = await asyncio.to_thread(tempfile.mkstemp, dir=path.parent, prefix=".put-")
        out = os.fdopen(descriptor, "wb")
        kept = False
        try:
            received, ended = 0, False
            block = bytearray()
            while not ended:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > length:
                    return None
                block += chunk
                ended = not message.get("more_body", False)
                if len(block) >= PUT_WRITE_BLOCK or ended:
                    await asyncio.to_thread(out.write, bytes(block))
                    block.clear()
            if received != length:
                return None
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(os.replace, temporary, path)
            kept = True
            return _etag(await asyncio.to_thread(path.stat))
        finally:
            out.close()
            if not kept:
                await asyncio.to_thread(Path(temporary).unlink, missing_ok=True)


def loopback_origins(public_url: str) -> frozenset[str]:
    """Every loopback spelling of `public_url`'s origin (same scheme and port), when its host is a
    loopback name; else none."""
    parts = urlsplit(public_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    if host not in LOOPBACK_NAMES:
        return frozenset()
    port = f":{parts.port}" if parts.port else ""
    return frozenset(f"{parts.scheme}://{name}{port}" for name in LOOPBACK_NAMES)


class LoopbackObjectCors:
    """CORS on the object routes (`/files/…`, GET and the signed PUT) for a page of `origins`.

    `restoration dev` prints `http://127.0.0.1:PORT/` and signs URLs under that origin; a person
    who opens `http://localhost:PORT/` instead has a page of another origin, whose direct upload
    (a PUT with a preflight) and `fetch` of an image the browser allows only with these answers.
    The signature stays the URL's only credential and is checked as before (it covers the key,
    expiry, length and type, not the host). A request from any other origin, and every other
    route (the dev token's included), goes on to the API's own CORS policy unchanged.
    """

    def __init__(self, app: ASGIApp, *, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins
        self.cors = CORSMiddleware(
            app,
            allow_origins=sorted(origins),
            allow_methods=["GET", "PUT"],
            allow_headers=["Content-Type"],
            expose_headers=["ETag"],
            max_age=CORS_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(FILES_PREFIX) and self._origin(scope) in self.origins:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @staticmethod
    def _origin(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"origin":
                return str(value.decode("latin-1"))
        return None
