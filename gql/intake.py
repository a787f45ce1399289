"""Judging an uploaded photo: the 413/415 rules, by content alone.

Accepted: JPEG (including MPO, whose extra pictures are previews), PNG, WebP and HEIC/HEIF, still
and complete. The pixel count is read from the header before any decoding; the file must then
decode completely and must not also be something else (HTML/script, a ZIP archive, data after a
PNG's end), because originals are served back byte for byte. Synchronous and CPU-bound: the API
runs `inspect_image` in a thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from PIL import ImageFile

from comfy.images import ImageTooLarge, UnsupportedImage, decoding_errors, open_image

__all__ = ["ImageInfo", "inspect_image"]

# (format, extension, content type) per Pillow format; HEIF is decided by its brand.
_KINDS = {
    "JPEG": ("jpeg", "jpg", "image/jpeg"),
    "MPO": ("jpeg", "jpg", "image/jpeg"),
    "PNG": ("png", "png", "image/png"),
    "WEBP": ("webp", "webp", "image/webp"),
}
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
    1/8 scale for JPEG and at full size (at most ``max_pixels``) for the other formats.
    Raises ``UnsupportedImage`` or ``ImageTooLarge``.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as fp:
            return _inspect_stream(fp, max_pixels=max_pixels)
    return _inspect_stream(path, max_pixels=max_pixels)


def _inspect_stream(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    fp.seek(0)
    if not fp.read(1):
        raise UnsupportedImage("empty file")
    with decoding_errors():
        with open_image(fp) as image:
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
            with open_image(fp) as image:  # verify() leaves the image unusable; decode a fresh one
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


def _describe(image: ImageFile.ImageFile) -> ImageInfo:
    width, height = image.size
    if image.format == "HEIF":
        brand = "heic" if getattr(image, "custom_mimetype", "").startswith("image/heic") else "heif"
        return ImageInfo("heic", brand, f"image/{brand}", width, height)
    kind, extension, content_type = _KINDS[str(image.format)]
    return ImageInfo(kind, extension, content_type, width, height)


