"""Reading upload requests without ever holding more than the limit.

`BodyLimitMiddleware` refuses a body whose `Content-Length` announces more than the limit before
reading a byte, cuts off a body that streams past it, drops a body that stalls, and lets the client
read every early answer (see the class). Starlette's multipart parser spools files to disk beyond
1 MiB, so memory stays flat whatever the upload; each file's SHA-256 is computed as its bytes are
spooled (`HashedUpload`), so an idempotency check never reads the spool again. The limit applies to the
file; `MULTIPART_OVERHEAD` leaves room for boundaries, part headers and the GraphQL `operations`
and `map` fields, and the file's own size is checked exactly after parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import python_multipart as multipart
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser, MultipartPart
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gql.errors import BadInput, MalformedRequest, PayloadTooLarge, ServiceError, UnsupportedMediaType

MULTIPART_OVERHEAD = 1024 * 1024
# Largest GraphQL document (and multipart `operations`/`map` field) accepted: real operations are
# a few hundred bytes; anything near this is an attack on the parser.
MAX_OPERATION_BYTES = 64 * 1024
# A request carries one image; a few more parts are tolerated only to answer "one file" clearly.
MAX_FILES = 8
MAX_FIELDS = 16
# Longest part header line accepted (file names of 10 KB and more are legitimate, if odd).
MAX_PART_HEADER_BYTES = 64 * 1024


BODY_TAIL = "restoration.body_tail"
TAIL_BYTES = 256

# An upload that sends nothing for this long is dropped (408) and its spool file removed: a client
# that stalled must not hold a socket and a temporary file for ever. Setting UPLOAD_IDLE_TIMEOUT_SECONDS.
DEFAULT_IDLE_TIMEOUT_SECONDS = 30.0
# After answering before the whole body was read (a 413, a 401 ...), the rest of the body is read and
# thrown away for at most this long and this many bytes before the connection is closed (a lingering
# close, as nginx does): a client that is still sending then reads the answer instead of a reset.
LINGER_SECONDS = 5.0
LINGER_MAX_BYTES = 128 * 1024 * 1024


class BodyTooLarge(PayloadTooLarge):
    pass


class UploadStalled(ServiceError):
    """The client sent nothing for the idle timeout in the middle of its body."""

    status = 408
    code = "REQUEST_TIMEOUT"


class BodyLimitMiddleware:
    """Body limits for POST/PUT/PATCH (pure ASGI).

    - `Content-Length` over the limit: 413 before a byte is read; a body that streams past it: 413.
    - Nothing received for `idle_timeout` seconds while the body is incomplete: 408.
    - Any answer sent before the body was read to its end goes out with `Connection: close`, then the
      rest of the body is drained (bounded by `LINGER_SECONDS` and `LINGER_MAX_BYTES`), then closed.
    """

    def __init__(
        self, app: ASGIApp, *, max_body: int, file_limit: int, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.file_limit = file_limit
        self.idle_timeout = idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        limit = self.max_body
        if not headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            limit = MAX_OPERATION_BYTES  # only multipart requests carry files
        body = _Body(receive, expects_continue=headers.get(b"expect", b"").lower() == b"100-continue")
        if length is not None and (not length.isdigit() or int(length) > limit):
            status, detail = (
                (413, _too_large(limit, self.file_limit)) if length.isdigit() else (400, "invalid Content-Length")
            )
            await body.answer(send, status, {"detail": detail})
            return

        async def limited() -> Message:
            if body.complete:
                return await receive()  # after the body: only http.disconnect is left to wait for
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await body.receive()
            except TimeoutError:
                body.stalled = True
                raise UploadStalled(f"no data received for {self.idle_timeout:g} seconds") from None
            if message["type"] == "http.request":
                if body.received > limit:
                    raise BodyTooLarge(_too_large(limit, self.file_limit))
                # Keep the body's last bytes: a multipart body must end with its closing boundary.
                scope[BODY_TAIL] = (scope.get(BODY_TAIL, b"") + message.get("body", b""))[-TAIL_BYTES:]
            return message

        try:
            await self.app(scope, limited, body.lingering(send))
        except UploadStalled as exc:  # raised where no handler answers it (outside a route)
            if body.started:
                raise
            await body.answer(send, exc.status, {"detail": str(exc)})


class _Body:
    """One request's body as received so far, and the lingering close of an early answer."""

    def __init__(self, receive: Receive, *, expects_continue: bool) -> None:
        self._receive = receive
        self.received = 0
        self.complete = False
        self.disconnected = False
        self.stalled = False
        self.started = False
        # A client waiting for `100 Continue` sends no body once it has the final answer.
        self.expects_continue = expects_continue

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:
            self.disconnected = True
        return message

    @property
    def unread(self) -> bool:
        return not (self.complete or self.disconnected)

    def lingering(self, send: Send) -> Send:
        """`send`, but an answer that leaves body unread closes the connection after draining it."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started = True
                if self.unread:
                    message = {**message, "headers": [*_without_connection(message.get("headers", [])), _CLOSE]}
            elif message["type"] == "http.response.body" and not message.get("more_body") and self.unread:
                await send({**message, "more_body": True})
                await self.drain()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        return wrapped

    async def answer(self, send: Send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await self.lingering(send)({"type": "http.response.start", "status": status, "headers": headers})
        await self.lingering(send)({"type": "http.response.body", "body": payload})

    async def drain(self) -> None:
        """Read and discard the rest of the body, within `LINGER_SECONDS` and `LINGER_MAX_BYTES`."""
        if self.stalled or (self.expects_continue and self.received == 0):
            return
        until = self.received + LINGER_MAX_BYTES
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_SECONDS):
                while self.unread and self.received < until:
                    await self.receive()


_CLOSE = (b"connection", b"close")


def _without_connection(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() != b"connection"]


def _too_large(limit: int, file_limit: int) -> str:
    if limit == MAX_OPERATION_BYTES:
        return f"request body too large: the limit is {MAX_OPERATION_BYTES} bytes"
    return f"file too large: the limit is {file_limit} bytes"


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request) -> FormData:
    """Parse (and cache on the request) a multipart body; malformed bodies → 400."""
    if not is_multipart(request):
        raise UnsupportedMediaType("the request body must be multipart/form-data")
    boundary = _boundary(request.headers.get("content-type", ""))
    if not boundary:
        raise MalformedRequest("multipart body without a boundary")
    if request._form is None:
        parser = UploadParser(
            request.headers,
            request.stream(),
            max_files=MAX_FILES,
            max_fields=MAX_FIELDS,
            max_part_size=MAX_OPERATION_BYTES,
        )
        try:
            request._form = await parser.parse()
        except MultiPartException as exc:
            raise MalformedRequest(f"malformed multipart body: {exc.message}") from None
    form = request._form
    tail = request.scope.get(BODY_TAIL, b"").rstrip(b"\r\n")
    if not tail.endswith(b"--" + boundary.encode("latin-1") + b"--"):
        await form.close()
        raise MalformedRequest("truncated multipart body (no closing boundary)")
    return form


class HashedUpload(UploadFile):
    """A spooled file part that hashes its bytes (SHA-256) as they are written to the spool."""

    def __init__(self, upload: UploadFile) -> None:
        super().__init__(upload.file, size=upload.size, filename=upload.filename, headers=upload.headers)
        self._sha256 = hashlib.sha256()

    async def write(self, data: bytes) -> None:
        self._sha256.update(data)
        await super().write(data)

    @property
    def digest(self) -> str:
        """The hex SHA-256 of every byte written so far (the whole file, once parsed)."""
        return self._sha256.hexdigest()


class UploadParser(MultiPartParser):
    """Starlette's multipart parser with a larger part-header limit, whose file parts are
    `HashedUpload`s.

    python-multipart refuses part header lines over 4 KiB, so a long client file name (which we
    accept and never use) would make a valid upload a 400. The body size is bounded anyway.
    """

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None:
            part.file = HashedUpload(part.file)

    async def parse(self) -> FormData:
        _, params = parse_options_header(self.headers["Content-Type"])
        boundary = params.get(b"boundary")
        if not boundary:
            raise MultiPartException("Missing boundary in multipart.")
        self._charset = "utf-8"
        callbacks: Any = {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }
        try:
            parser = multipart.MultipartParser(boundary, callbacks, max_header_size=MAX_PART_HEADER_BYTES)
            async for chunk in self.stream:
                parser.write(chunk)
                for part, data in self._file_parts_to_write:
                    await _spool_of(part).write(data)
                for part in self._file_parts_to_finish:
                    await _spool_of(part).seek(0)
                self._file_parts_to_write.clear()
                self._file_parts_to_finish.clear()
            parser.finalize()
        except BaseException as exc:
            for file in self._files_to_close_on_error:
                file.close()
            if isinstance(exc, multipart.exceptions.FormParserError):
                raise MultiPartException("Invalid multipart data.") from exc
            raise
        return FormData(self.items)


def _spool_of(part: MultipartPart) -> UploadFile:
    # Starlette queues only file parts, each with its spool file; a part without one is our bug.
    if part.file is None:
        raise RuntimeError("multipart file part without a spool file")
    return part.file


def _boundary(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def single_file(form: FormData, name: str) -> UploadFile:
    """The one file uploaded under `name`: 422 when it is missing, not a file, or repeated."""
    values = form.getlist(name)
    files = [value for value in values if isinstance(value, UploadFile)]
    if not values:
        raise BadInput(f"missing file field {name!r}")
    if len(values) > 1 or sum(isinstance(value, UploadFile) for value in form.values()) > 1:
        raise BadInput("exactly one file must be uploaded")
    if not files:
        raise BadInput(f"field {name!r} must be a file upload")
    return files[0]


def check_size(upload: UploadFile, *, limit: int) -> int:
    size = upload.size if upload.size is not None else _measure(upload)
    if size > limit:
        raise PayloadTooLarge(f"file too large: {size} bytes, the limit is {limit} bytes")
    return size


def _measure(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    size = upload.file.tell()
    upload.file.seek(0)
    return size


@dataclass
class GraphQLMultipart:
    """A validated GraphQL multipart request (spec: `operations`, `map`, file parts)."""

    operations: dict[str, Any]
    files: dict[str, UploadFile] = field(default_factory=dict)


def validate_graphql_multipart(form: FormData) -> GraphQLMultipart:
    """Refuse what the multipart request spec does not allow, as HTTP 400.

    Missing `operations` or `map`, a map entry naming a file part that is absent, a path that is
    not `variables.<declared variable>`, or two files bound to one variable.
    """
    operations = _json_field(form, "operations")
    mapping = _json_field(form, "map")
    if not isinstance(operations, dict):
        raise MalformedRequest("multipart `operations` must be a JSON object (batching is not supported)")
    if not isinstance(mapping, dict):
        raise MalformedRequest("multipart `map` must be a JSON object")
    variables = operations.get("variables") or {}
    if not isinstance(variables, dict):
        raise MalformedRequest("`variables` must be an object")
    files: dict[str, UploadFile] = {}
    bound: set[str] = set()
    for part, paths in mapping.items():
        upload = form.get(part)
        if not isinstance(upload, UploadFile):
            raise MalformedRequest(f"multipart `map` names part {part!r}, which is not a file in the request")
        if not isinstance(paths, list) or not paths:
            raise MalformedRequest(f"multipart `map` entry {part!r} must be a non-empty list of paths")
        for path in paths:
            head, _, variable = str(path).partition(".")
            if head != "variables" or not variable or variable.split(".")[0] not in variables:
                raise MalformedRequest(f"multipart `map` path {path!r} does not name a declared variable")
            if path in bound:
                raise MalformedRequest(f"more than one file is mapped to {path!r}")
            bound.add(path)
        files[part] = upload
    extra = [key for key, value in form.multi_items() if isinstance(value, UploadFile) and key not in mapping]
    if extra:
        raise MalformedRequest(f"file part(s) {', '.join(map(repr, extra))} are not in the multipart `map`")
    return GraphQLMultipart(operations=operations, files=files)


def _json_field(form: FormData, name: str) -> object:
    raw = form.get(name)
    if raw is None:
        raise MalformedRequest(f"multipart request without the `{name}` field")
    if isinstance(raw, UploadFile):
        raise MalformedRequest(f"multipart `{name}` must be a field, not a file")
    try:
        return json.loads(raw)
    except ValueError:
        raise MalformedRequest(f"multipart `{name}` is not valid JSON") from None
