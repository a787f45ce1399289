"""Judging an uploaded photo: the 413/415 rules, by content alone.

Accepted: JPEG (including MPO, whose extra pictures are previews), PNG, WebP and HEIC/HEIF, still
and complete. The pixel count is read from the header before any decoding; the file must then
decode completely and must not also be something else (HTML/script, a ZIP archive, data after a
PNG's end), because originals are served back byte for byte. Synchronous and CPU-bound: the API
runs `inspect_image` in a thread.

Memory: the file is read in pieces of at most 1 MiB. JPEG is decoded at 1/8 scale. PNG is proven
complete without holding its pixels: every chunk's CRC is checked and the compressed image data is
inflated piece by piece, counting the scanlines and checking each row's filter byte (what Pillow's
full decode would reject: a bad CRC, a broken or short zlib stream, an unknown filter). WebP goes
to libwebp's incremental decoder at 1/8 scale (`gql.webp_proof`: flat for lossy WebP; lossless
WebP still costs its full-size ARGB image, 4 bytes per pixel, inside libwebp). HEIF is read by
libheif through a streaming reader and a grid image (what phones write) is decoded one tile at a
time (`gql.heic_proof`); a picture of a single tile larger than 2 megapixels, or a grid with alpha,
is still decoded in full by pillow-heif (about 3 bytes per pixel, and the file held whole).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from PIL import ImageFile

from comfy.images import ImageTooLarge, UnsupportedImage, decoding_errors, open_image
from gql import heic_proof, webp_proof

__all__ = ["ImageInfo", "inspect_image"]

# (format, extension, content type) per Pillow format; HEIF is decided by its brand.
_KINDS = {
    "JPEG": ("jpeg", "jpg", "image/jpeg"),
    "MPO": ("jpeg", "jpg", "image/jpeg"),
    "PNG": ("png", "png", "image/png"),
    "WEBP": ("webp", "webp", "image/webp"),
}
# The ftyp brands pillow-heif opens as HEIF (its `_is_supported_heif`); the first eight are HEIC.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
# libjpeg can decode at 1/8 scale: it still reads every byte, but allocates 64x less.
_JPEG_PROOF_SCALE = 8


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted upload is. ``width``/``height`` are the decoder's size: as stored for
    JPEG, PNG and WebP (before EXIF orientation); libheif already applies HEIF rotations."""

    format: str  # "jpeg" | "png" | "webp" | "heic" (any HEIF container)
    extension: str  # "jpg" | "png" | "webp" | "heic" | "heif"
    content_type: str
    width: int
    height: int


def inspect_image(path: str | os.PathLike[str] | BinaryIO, *, max_pixels: int) -> ImageInfo:
    """Identify an upload by its content and prove that it decodes completely.

    ``path`` is a file path or a seekable binary file, read from its start and left open.
    The pixel count is checked from the header before any decoding; decoding then runs at
    1/8 scale for JPEG and WebP, streamed for PNG, tile by tile for a HEIF grid, and at full size (at
    most ``max_pixels``) for other HEIF.
    Raises ``UnsupportedImage`` or ``ImageTooLarge``.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as fp:
            return _inspect_stream(fp, max_pixels=max_pixels)
    return _inspect_stream(path, max_pixels=max_pixels)


def _inspect_stream(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    fp.seek(0)
    magic = fp.read(12)
    if not magic:
        raise UnsupportedImage("empty file")
    if magic[:4] == b"RIFF" and magic[8:] == b"WEBP" and webp_proof.available():
        info = _inspect_webp(fp, max_pixels=max_pixels)
    elif magic[4:8] == b"ftyp" and magic[8:12] in _HEIF_BRANDS and heic_proof.available():
        info = _inspect_heic(fp, magic[8:12], max_pixels=max_pixels) or _inspect_with_pillow(fp, max_pixels=max_pixels)
    else:
        info = _inspect_with_pillow(fp, max_pixels=max_pixels)
    if info.format == "png":
        _prove_png(fp)
    reason = _polyglot_reason(fp, info.format)
    if reason:
        raise UnsupportedImage(f"the file is not only an image: {reason}")
    return info


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image has {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")


def _inspect_webp(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    header = webp_proof.read_header(fp)
    _check_pixels(header.width, header.height, max_pixels)
    webp_proof.prove_webp(fp, header)
    return ImageInfo("webp", "webp", "image/webp", header.width, header.height)


def _inspect_heic(fp: BinaryIO, brand: bytes, *, max_pixels: int) -> ImageInfo | None:
    """The HEIF proven through libheif tile by tile; None when that cannot be done in bounded
    memory (a large picture of a single tile), for pillow-heif's full decode to judge."""
    image, verdict = heic_proof.prove_heic(fp, max_pixels=max_pixels)
    if verdict is heic_proof.Verdict.NOT_PROVEN:
        return None
    extension = "heic" if brand in _HEIF_BRANDS[:8] else "heif"  # as `_describe` names it
    return ImageInfo("heic", extension, f"image/{extension}", image.width, image.height)


def _inspect_with_pillow(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    fp.seek(0)
    with decoding_errors():
        with open_image(fp) as image:
            info = _describe(image)
            _check_pixels(info.width, info.height, max_pixels)
            if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
                raise UnsupportedImage("animated and multi-image files are not supported")
            if image.format != "PNG":
                if image.format in ("JPEG", "MPO"):
                    size = (max(1, info.width // _JPEG_PROOF_SCALE), max(1, info.height // _JPEG_PROOF_SCALE))
                    image.draft(None, size)
                image.load()
    return info


# Markup that makes a file renderable as a web page or script; long enough that compressed
# image data does not produce them by chance (~1e-13 per position).
_MARKUP = (b"<script", b"<iframe", b"<!doctype", b"<html>", b"<html ", b"<svg ", b"<?php", b"<object")
# One case-insensitive pattern: a single pass over each piece, not a lowered copy and 8 searches.
_MARKUP_PATTERN = re.compile(b"|".join(re.escape(marker) for marker in _MARKUP), re.IGNORECASE)
_SCAN_CHUNK = 1024 * 1024
_ZIP_TAIL = 65536 + 22  # a ZIP's end-of-central-directory record sits in its last 64 KiB + 22 bytes
_PNG_END = b"IEND\xaeB`\x82"


def _polyglot_reason(fp: BinaryIO, kind: str) -> str | None:
    """Why the file is also something else (HTML/script, a ZIP archive, data after a PNG's end).

    Stored originals are served back byte for byte, so a file that a browser or an unzip tool
    would read as something other than an image is refused rather than cleaned.
    """
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    fp.seek(max(0, size - _ZIP_TAIL))
    tail = fp.read()
    if kind == "png" and not tail.endswith(_PNG_END):
        return "data after the end of the PNG"
    if b"PK\x05\x06" in tail:
        return "a ZIP archive"
    fp.seek(0)
    overlap = b""
    while chunk := fp.read(_SCAN_CHUNK):
        if _MARKUP_PATTERN.search(overlap + chunk):
            return "HTML or script markup"
        overlap = chunk[-16:]
    return None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels per PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_FILTERS = bytes(range(5))  # none, sub, up, average, Paeth


def _prove_png(fp: BinaryIO) -> None:
    """Prove a PNG complete in constant memory, as a full decode would (see the module docstring)."""
    fp.seek(0)
    if fp.read(8) != _PNG_SIGNATURE:
        raise UnsupportedImage("not a PNG signature")
    rows: list[tuple[int, int, int]] = []  # (first byte of the pass, rows, bytes per row with filter)
    inflater = zlib.decompressobj()
    inflated = 0
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise UnsupportedImage("the PNG ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise UnsupportedImage("PNG chunk length out of range")
        crc = zlib.crc32(kind)
        first = kind == b"IHDR"
        body = b""
        remaining = length
        while remaining:
            piece = fp.read(min(remaining, _SCAN_CHUNK))
            if not piece:
                raise UnsupportedImage("the PNG is truncated")
            remaining -= len(piece)
            crc = zlib.crc32(piece, crc)
            if first:
                body += piece
                if len(body) > 13:
                    raise UnsupportedImage("malformed PNG header")
            elif kind == b"IDAT":
                if not rows:
                    raise UnsupportedImage("PNG image data before its header")
                inflated = _inflate(inflater, piece, rows, inflated)
        stored = fp.read(4)
        if len(stored) < 4 or struct.unpack(">I", stored)[0] != crc:
            raise UnsupportedImage("broken PNG chunk (bad checksum)")
        if first:
            rows = _png_rows(body)
        if kind == b"IEND":
            break
    expected = sum(count * stride for _, count, stride in rows)
    if inflated < expected:
        raise UnsupportedImage("the PNG's image data is truncated")


def _png_rows(ihdr: bytes) -> list[tuple[int, int, int]]:
    if len(ihdr) != 13:
        raise UnsupportedImage("malformed PNG header")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if colour not in _PNG_CHANNELS:
        raise UnsupportedImage("unknown PNG colour type")
    bits = _PNG_CHANNELS[colour] * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    rows = []
    start = 0
    for x0, y0, dx, dy in passes:
        pass_width = -(-(width - x0) // dx) if width > x0 else 0
        pass_rows = -(-(height - y0) // dy) if height > y0 else 0
        if pass_width and pass_rows:
            stride = 1 + -(-(pass_width * bits) // 8)
            rows.append((start, pass_rows, stride))
            start += pass_rows * stride
    return rows


def _inflate(inflater: zlib._Decompress, data: bytes, rows: list[tuple[int, int, int]], done: int) -> int:
    """Inflate `data` in bounded pieces, checking the filter byte of every row; bytes inflated so far."""
    try:
        while data:
            piece = inflater.decompress(data, _SCAN_CHUNK)
            data = inflater.unconsumed_tail
            for start, count, stride in rows:
                end = start + count * stride
                if end <= done or start >= done + len(piece):
                    continue
                first = max(0, -(-(done - start) // stride))
                filters = piece[start + first * stride - done : min(end, done + len(piece)) - done : stride]
                if filters.translate(None, _PNG_FILTERS):
                    raise UnsupportedImage("PNG row with an unknown filter")
            done += len(piece)
    except zlib.error as exc:
        raise UnsupportedImage("the PNG's image data is corrupt") from exc
    return done


def _describe(image: ImageFile.ImageFile) -> ImageInfo:
    width, height = image.size
    if image.format == "HEIF":
        brand = "heic" if getattr(image, "custom_mimetype", "").startswith("image/heic") else "heif"
        return ImageInfo("heic", brand, f"image/{brand}", width, height)
    kind, extension, content_type = _KINDS[str(image.format)]
    return ImageInfo(kind, extension, content_type, width, height)
