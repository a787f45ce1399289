"""Hostile and odd uploads: each gets its status, never a 500, and a refusal leaves nothing behind.

Every case is sent by a user of its own; afterwards a refused upload must have left no job row
for that user, no stored object and no queued task. AVIF is refused (only JPEG, PNG, WebP and
HEIC/HEIF are in the contract), as are animated images and polyglots (a file that is also HTML,
script or a ZIP archive), because originals are served back byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from huey import RedisHuey

from models.job import RestorationJob
from tests.fixtures import images
from tests.fixtures.jwks import TokenFactory
from tests.fixtures.s3 import S3ServerHandle
from tests.fixtures.services import ApiServer
from tests.gql.helpers import RESTORE, RESTORE_MUTATION

MiB = 1024 * 1024
LIMIT = 50 * MiB

Send = Callable[[httpx.AsyncClient, ApiServer, str], Awaitable[int]]


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    send: Send


def upload(
    data: bytes | Callable[[], bytes], *, name: str = "photo.jpg", content_type: str = "image/jpeg", **fields: str
) -> Send:
    async def send(client: httpx.AsyncClient, api: ApiServer, token: str) -> int:
        body = data() if callable(data) else data
        response = await client.post(RESTORE, files={"file": (name, body, content_type)}, data=fields)
        return response.status_code

    return send


def raw_multipart(body: bytes, content_type: str = "multipart/form-data; boundary=xyz") -> Send:
    async def send(client: httpx.AsyncClient, api: ApiServer, token: str) -> int:
        response = await client.post(RESTORE, content=body, headers={"content-type": content_type})
        return response.status_code

    return send


def part(name: str, body: bytes, *, filename: bytes | None = None, boundary: bytes = b"xyz") -> bytes:
    disposition = b'form-data; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + body + b"\r\n"


def closing(boundary: bytes = b"xyz") -> bytes:
    return b"--" + boundary + b"--\r\n"


def graphql_multipart(operations: dict, mapping: dict | None, files: list[tuple[str, bytes]]) -> Send:
    async def send(client: httpx.AsyncClient, api: ApiServer, token: str) -> int:
        data = {"operations": json.dumps(operations)}
        if mapping is not None:
            data["map"] = json.dumps(mapping)
        response = await client.post(
            "/graphql", data=data, files=[(key, ("p.jpg", body, "image/jpeg")) for key, body in files]
        )
        return response.status_code

    return send


def announced(length: int) -> Send:
    async def send(client: httpx.AsyncClient, api: ApiServer, token: str) -> int:
        host, port = api.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST {RESTORE} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        return int(answer.split()[1])

    return send


def streamed_past_the_limit() -> Send:
    async def send(client: httpx.AsyncClient, api: ApiServer, token: str) -> int:
        async def body():
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
            for _ in range(LIMIT // MiB + 4):
                yield b"\0" * MiB

        try:
            response = await client.post(
                RESTORE, content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"}
            )
        except httpx.WriteError:
            # The server answered and closed while we were still sending; that nothing was stored
            # or recorded is what the test checks next.
            return 413
        return response.status_code

    return send


JPEG = images.jpeg_bytes(64, 48)
PNG = images.png_bytes(64, 48)
HEIC = images.heic_bytes(64, 48)
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="10" height="10"/></svg>'
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
OPERATION = {"query": RESTORE_MUTATION, "variables": {"file": None}}


def padded_jpeg(size: int) -> bytes:
    return JPEG + b"\0" * (size - len(JPEG))


CASES = [
    Case("zero bytes", 415, upload(b"")),
    Case("truncated JPEG", 415, upload(images.truncated(images.jpeg_bytes(256, 256)))),
    Case("truncated PNG", 415, upload(images.truncated(images.png_bytes(256, 256)), name="a.png")),
    Case("truncated HEIC", 415, upload(images.truncated(images.heic_bytes(256, 256)), name="a.heic")),
    Case("plain text", 415, upload(b"just some text\n", name="a.txt", content_type="text/plain")),
    Case("HTML", 415, upload(HTML, name="a.html", content_type="text/html")),
    Case("SVG", 415, upload(SVG, name="a.svg", content_type="image/svg+xml")),
    Case("PDF", 415, upload(PDF, name="a.pdf", content_type="application/pdf")),
    Case("ZIP", 415, upload(images.zip_bytes(), name="a.zip", content_type="application/zip")),
    Case("GIF", 415, upload(images.other_format_bytes("GIF"), name="a.gif", content_type="image/gif")),
    Case("BMP", 415, upload(images.other_format_bytes("BMP"), name="a.bmp")),
    Case("TIFF", 415, upload(images.other_format_bytes("TIFF"), name="a.tiff")),
    Case("ICO", 415, upload(images.other_format_bytes("ICO"), name="a.ico")),
    Case("AVIF (not supported)", 415, upload(images.other_format_bytes("AVIF"), name="a.avif")),
    Case("polyglot JPEG + ZIP", 415, upload(JPEG + images.zip_bytes())),
    Case("polyglot JPEG + HTML", 415, upload(JPEG + HTML)),
    Case("polyglot PNG + ZIP", 415, upload(PNG + images.zip_bytes(), name="a.png")),
    Case("JPEG declared as PNG and named .heic", 202, upload(JPEG, name="photo.heic", content_type="image/png")),
    Case("PNG pixel bomb", 413, upload(images.png_bomb(), name="bomb.png")),
    Case("JPEG pixel bomb", 413, upload(images.jpeg_bomb())),
    Case("HEIC pixel bomb", 413, upload(images.heic_bomb(), name="bomb.heic")),
    Case("1x1 pixel", 202, upload(images.png_bytes(1, 1), name="dot.png")),
    Case("extreme aspect ratio 4000x2", 202, upload(images.jpeg_bytes(4000, 2))),
    Case("extreme aspect ratio 2x4000", 202, upload(images.png_bytes(2, 4000), name="a.png")),
    Case("CMYK JPEG", 202, upload(images.jpeg_bytes(64, 48, mode="CMYK"))),
    Case("16-bit PNG", 202, upload(images.png_bytes(64, 48, mode="I;16"), name="a.png")),
    Case("animated WebP", 415, upload(images.animated_webp_bytes(), name="a.webp")),
    Case("animated PNG", 415, upload(images.animated_png_bytes(), name="a.png")),
    Case("exactly 50 MiB", 202, upload(lambda: padded_jpeg(LIMIT))),
    Case("50 MiB + 1 byte", 413, upload(lambda: padded_jpeg(LIMIT + 1))),
    Case("5 GB announced by Content-Length", 413, announced(5 * 1024**3)),
    Case("body without Content-Length streaming past the limit", 413, streamed_past_the_limit()),
    Case("missing file field", 422, raw_multipart(part("denoise", b"0.5") + closing())),
    Case(
        "two files",
        422,
        raw_multipart(part("file", JPEG, filename=b"a.jpg") + part("file", JPEG, filename=b"b.jpg") + closing()),
    ),
    Case("file field that is not a file", 422, raw_multipart(part("file", b"hello") + closing())),
    Case("denoise -0.1", 422, upload(JPEG, denoise="-0.1")),
    Case("denoise 1.1", 422, upload(JPEG, denoise="1.1")),
    Case("denoise NaN", 422, upload(JPEG, denoise="NaN")),
    Case("denoise inf", 422, upload(JPEG, denoise="inf")),
    Case("denoise abc", 422, upload(JPEG, denoise="abc")),
    Case("denoise empty", 422, upload(JPEG, denoise="")),
    Case("file name with path traversal", 202, upload(JPEG, name="../../../etc/passwd")),
    Case("file name 10 KB long", 202, upload(JPEG, name="x" * 10240 + ".jpg")),
    Case("file name with a NUL byte", 202, raw_multipart(part("file", JPEG, filename=b"evil\x00.jpg") + closing())),
    Case("unicode file name", 202, upload(JPEG, name="Grand-mère 👵 曾祖母.jpg")),
    Case(
        "bad boundary", 400, raw_multipart(part("file", JPEG, filename=b"a.jpg", boundary=b"other") + closing(b"other"))
    ),
    Case(
        "missing boundary",
        400,
        raw_multipart(part("file", JPEG, filename=b"a.jpg") + closing(), content_type="multipart/form-data"),
    ),
    Case("truncated multipart", 400, raw_multipart(part("file", JPEG, filename=b"a.jpg")[:-40])),
    Case("body that is not multipart", 415, raw_multipart(b'{"file": "x"}', content_type="application/json")),
    Case("GraphQL multipart without map", 400, graphql_multipart(OPERATION, None, [("0", JPEG)])),
    Case(
        "GraphQL map to an undeclared variable",
        400,
        graphql_multipart(OPERATION, {"0": ["variables.photo"]}, [("0", JPEG)]),
    ),
    Case(
        "GraphQL two files for one variable",
        400,
        graphql_multipart(OPERATION, {"0": ["variables.file"], "1": ["variables.file"]}, [("0", JPEG), ("1", JPEG)]),
    ),
    Case(
        "GraphQL file part missing from the request", 400, graphql_multipart(OPERATION, {"0": ["variables.file"]}, [])
    ),
]


def test_the_corpus_has_at_least_35_cases() -> None:
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_upload_case(
    case: Case, api: ApiServer, tokens: TokenFactory, s3_server: S3ServerHandle, queued: RedisHuey
) -> None:
    s3_server.reset()
    user = f"corpus-{uuid.uuid4().hex[:8]}"
    token = tokens.issue(sub=user)
    async with api.client(token) as client:
        status = await case.send(client, api, token)
        assert status == case.status

        jobs = await RestorationJob.filter(user_id=user).count()
        if case.status == 202:
            assert jobs == 1
            [key] = s3_server.keys("originals/")
            assert ".." not in key
            assert "passwd" not in key
            assert "\x00" not in key
        else:
            assert jobs == 0
            assert s3_server.keys() == []
            assert queued.pending_count() == 0
        # The API keeps serving after whatever it was sent.
        assert (await client.get("/healthz")).status_code == 200
