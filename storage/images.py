"""Checking uploaded photos, and the image conversions around ComfyUI.

Every function here is synchronous and CPU-bound (Pillow, libjpeg, libheif): callers in
async code run them with ``asyncio.to_thread``; the worker calls them directly.

Accepted formats, judged by content alone: JPEG (including MPO, whose extra pictures are
previews), PNG, WebP and HEIC/HEIF. Animated or multi-image files are refused.

Exceptions::

    ImageRejected            the upload is not an acceptable image; ``message`` is for humans
    ├── UnsupportedImage     (HTTP 415) empty, another format, animated, truncated or corrupt
    └── ImageTooLarge        (HTTP 413) more pixels than allowed, read from the header

Anything else (``MemoryError``, ``OSError`` while opening a path, ...) is not the
uploader's fault and propagates unchanged.

Pillow's own decompression-bomb guard stays at its global default: it warns above
``Image.MAX_IMAGE_PIXELS`` (harmless, we count pixels ourselves) and refuses above twice
that, which therefore caps ``max_pixels`` at about 179 million pixels.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageInfo",
    "ImageRejected",
    "ImageTooLarge",
    "UnsupportedImage",
    "inspect_image",
    "normalise_for_comfy",
    "strip_png_metadata",
]

_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
# (format, extension, content type) per Pillow format; HEIF is decided by its brand.
_KINDS = {
    "JPEG": ("jpeg", "jpg", "image/jpeg"),
    "MPO": ("jpeg", "jpg", "image/jpeg"),
    "PNG": ("png", "png", "image/png"),
    "WEBP": ("webp", "webp", "image/webp"),
}
# libjpeg can decode at 1/8 scale: it still reads every byte, but allocates 64x less.
_JPEG_PROOF_SCALE = 8
_COMFY_PNG_COMPRESS_LEVEL = 1  # the PNG only travels to ComfyUI; speed beats size
_WHITE = (255, 255, 255)
_UNSUPPORTED = "not a JPEG, PNG, WebP or HEIC/HEIF image"
_CORRUPT = "the image data is truncated or corrupt"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MAX_CHUNK = 2**31 - 1  # the PNG specification's limit on a chunk's length
# Ancillary chunks that change how pixels look; every other ancillary chunk (text,
# EXIF, timestamps, private data, APNG frames) is dropped. Critical chunks are always kept.
_PNG_KEPT_ANCILLARY = frozenset(
    {b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI", b"pHYs", b"tRNS", b"sBIT", b"bKGD"}
)


class ImageRejected(Exception):
    """The upload is not an acceptable image."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedImage(ImageRejected):
    """Not a complete, decodable, still JPEG, PNG, WebP or HEIC/HEIF image."""


class ImageTooLarge(ImageRejected):
    """The image has more pixels than allowed."""


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted upload is. ``width``/``height`` are the decoder's size: as stored for
    JPEG, PNG and WebP (before EXIF orientation); libheif already applies HEIF rotations."""

    format: str  # "jpeg" | "png" | "webp" | "heic" (any HEIF container)
    extension: str  # "jpg" | "png" | "webp" | "heic" | "heif"
    content_type: str
    width: int
    height: int


@functools.cache
def _register_heif() -> None:
    """Teach Pillow to open HEIF, once; this registration is the only global we touch."""
    pillow_heif.register_heif_opener()


def inspect_image(path: str | os.PathLike[str] | BinaryIO, *, max_pixels: int) -> ImageInfo:
    """Identify an upload by its content and prove that it decodes completely.

    ``path`` is a file path or a seekable binary file, read from its start and left open.
    The pixel count is checked from the header before any decoding; decoding then runs at
    1/8 scale for JPEG and at full size (at most ``max_pixels``) for the other formats.
    Raises ``UnsupportedImage`` or ``ImageTooLarge``.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as fp:
            return _inspect_stream(fp, max_pixels=max_pixels)
    return _inspect_stream(path, max_pixels=max_pixels)


def normalise_for_comfy(data: bytes) -> bytes:
    """Turn an accepted upload into what ComfyUI gets: upright, 8-bit RGB, no metadata, PNG.

    EXIF orientation is applied, transparency is composited on white, 16-bit grey is scaled
    down (Pillow would clip it) and only the first picture of an MPO is used.
    Raises ``UnsupportedImage`` for undecodable data, ``ImageTooLarge`` past Pillow's own
    bomb limit; enforcing ``max_pixels`` is ``inspect_image``'s job, done at upload.
    """
    with _pillow_errors_as_rejections():
        with _open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
        rgb = _to_rgb(upright)
    rgb.info = {}  # the PNG encoder would copy the ICC profile, DPI and transparency from info
    out = io.BytesIO()
    rgb.save(out, "PNG", compress_level=_COMFY_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def strip_png_metadata(data: bytes) -> bytes:
    """Drop text, EXIF, time and other non-visual chunks from a PNG without re-encoding.

    ComfyUI's SaveImage writes the whole workflow into ``prompt``/``workflow`` text chunks,
    which must not reach users. Chunk structure and CRCs are checked; bytes after IEND are
    dropped. Raises ``UnsupportedImage`` when ``data`` is not a well-formed PNG.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise UnsupportedImage("not a PNG image")
    view = memoryview(data)
    kept = [view[: len(_PNG_SIGNATURE)]]
    position, seen = len(_PNG_SIGNATURE), set[bytes]()
    while b"IEND" not in seen:
        if position + 12 > len(data):
            raise UnsupportedImage("the PNG is truncated")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if not kind.isalpha() or length > _PNG_MAX_CHUNK or end > len(data):
            raise UnsupportedImage("the PNG is truncated or its chunk structure is corrupt")
        if zlib.crc32(view[position + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            raise UnsupportedImage("a PNG chunk fails its checksum")
        if not seen and (kind != b"IHDR" or length != 13):
            raise UnsupportedImage("the PNG does not start with its header chunk")
        if not kind[0] & 0x20 or kind in _PNG_KEPT_ANCILLARY:  # bit 5 of the first letter: ancillary
            kept.append(view[position:end])
        seen.add(kind)
        position = end
    if b"IDAT" not in seen:
        raise UnsupportedImage("the PNG has no image data")
    return b"".join(kept)


def _inspect_stream(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    fp.seek(0)
    if not fp.read(1):
        raise UnsupportedImage("empty file")
    with _pillow_errors_as_rejections():
        with _open(fp) as image:
            info = _describe(image)
            if info.width * info.height > max_pixels:
                raise ImageTooLarge(
                    f"the image has {info.width}x{info.height} = {info.width * info.height:,} pixels;"
                    f" the limit is {max_pixels:,}"
                )
            if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
                raise UnsupportedImage("animated and multi-image files are not supported")
            if image.format == "PNG":
                image.verify()  # checks every chunk's CRC, which load() skips
            else:
                if image.format in ("JPEG", "MPO"):
                    size = (max(1, info.width // _JPEG_PROOF_SCALE), max(1, info.height // _JPEG_PROOF_SCALE))
                    image.draft(None, size)
                image.load()
        if info.format == "png":
            with _open(fp) as image:  # verify() leaves the image unusable; decode a fresh one
                image.load()
    reason = _polyglot_reason(fp, info.format)
    if reason:
        raise UnsupportedImage(f"the file is not only an image: {reason}")
    return info


# Markup that makes a file renderable as a web page or script; long enough that compressed
# image data does not produce them by chance (~1e-13 per position).
_MARKUP = (b"<script", b"<iframe", b"<!doctype", b"<html>", b"<html ", b"<svg ", b"<?php", b"<object")
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
        window = (overlap + chunk).lower()
        if any(marker in window for marker in _MARKUP):
            return "HTML or script markup"
        overlap = chunk[-16:]
    return None


def _open(fp: BinaryIO) -> ImageFile.ImageFile:
    _register_heif()
    return Image.open(fp, formats=_PILLOW_FORMATS)


def _describe(image: ImageFile.ImageFile) -> ImageInfo:
    width, height = image.size
    if image.format == "HEIF":
        brand = "heic" if getattr(image, "custom_mimetype", "").startswith("image/heic") else "heif"
        return ImageInfo("heic", brand, f"image/{brand}", width, height)
    kind, extension, content_type = _KINDS[str(image.format)]
    return ImageInfo(kind, extension, content_type, width, height)


@contextlib.contextmanager
def _pillow_errors_as_rejections() -> Iterator[None]:
    """Map whatever Pillow raises on hostile input to ``ImageRejected``, at this one boundary."""
    try:
        yield
    except (ImageRejected, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image has too many pixels") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(_UNSUPPORTED) from exc
    except Exception as exc:  # libjpeg, libpng, libwebp and libheif fail in many ways
        raise UnsupportedImage(_CORRUPT) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "I" or image.mode.startswith("I;16"):
        # Pillow clips 16-bit values to 255 when converting; scale 0..65535 onto 0..255.
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if not image.has_transparency_data:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat
