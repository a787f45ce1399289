"""Decoding the photo formats we accept, and the image conversions around ComfyUI.

Every function here is synchronous and CPU-bound (Pillow, libjpeg, libheif): callers in async
code run them with ``asyncio.to_thread``. The formats are those ComfyUI's LoadImage reads once
normalised: JPEG (including MPO), PNG, WebP and HEIC/HEIF (through pillow-heif).

Exceptions::

    ImageRejected            not an acceptable image; ``message`` is for humans
    ├── UnsupportedImage     (HTTP 415 at upload) empty, another format, animated, truncated or corrupt
    └── ImageTooLarge        (HTTP 413 at upload) more pixels than allowed, read from the header

Anything else (``MemoryError``, ``OSError`` while opening a path, ...) is not the uploader's
fault and propagates unchanged. Pillow's own decompression-bomb guard stays at its default: it
refuses above twice ``Image.MAX_IMAGE_PIXELS``, about 179 million pixels.
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ComfyInput",
    "ImageRejected",
    "ImageTooLarge",
    "UnsupportedImage",
    "decoding_errors",
    "normalise_for_comfy",
    "open_image",
    "prepare_for_comfy",
    "strip_png_metadata",
]

PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")
# Re-encoded inputs only travel to ComfyUI, which scales them to 1 megapixel: fast beats small.
_COMFY_JPEG_QUALITY = 95
# Formats ComfyUI's LoadImage reads as they are, and the extension their input file gets.
_PASS_THROUGH = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_EXIF_ORIENTATION = 0x0112
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


@functools.cache
def _register_heif() -> None:
    """Teach Pillow to open HEIF, once; this registration is the only global we touch."""
    pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class ComfyInput:
    """What is uploaded to ComfyUI for a job: the bytes, their extension, and whether we re-encoded."""

    data: bytes
    extension: str
    converted: bool


def prepare_for_comfy(data: bytes) -> ComfyInput:
    """What ComfyUI gets for an accepted upload: the original bytes when LoadImage reads them right
    as they are, else a cheap re-encode (`normalise_for_comfy`).

    Passed as they are: a still 8-bit RGB or grey JPEG, PNG or WebP, upright (no EXIF rotation),
    with no transparency. Everything else (HEIC, which ComfyUI cannot open; MPO, whose preview
    frames LoadImage would batch; CMYK; 16-bit; transparency; a rotation) is normalised. Only the
    header is read to decide, so the common case costs no decode at all.
    """
    with decoding_errors(), open_image(io.BytesIO(data)) as image:
        extension = _PASS_THROUGH.get(str(image.format))
        as_is = (
            extension is not None
            and image.mode in ("RGB", "L")
            and getattr(image, "n_frames", 1) == 1
            and not image.has_transparency_data
            and image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        )
    if as_is and extension is not None:
        return ComfyInput(data=data, extension=extension, converted=False)
    return ComfyInput(data=normalise_for_comfy(data), extension="jpg", converted=True)


def normalise_for_comfy(data: bytes) -> bytes:
    """Turn an accepted upload into an upright 8-bit RGB JPEG (quality 95, no chroma subsampling)
    without metadata: a fast encode that keeps far more detail than the 1-megapixel workflow uses.

    EXIF orientation is applied, transparency is composited on white, 16-bit grey is scaled
    down (Pillow would clip it) and only the first picture of an MPO is used.
    Raises ``UnsupportedImage`` for undecodable data, ``ImageTooLarge`` past Pillow's own
    bomb limit; enforcing ``max_pixels`` is ``inspect_image``'s job, done at upload.
    """
    with decoding_errors():
        with open_image(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
        rgb = _to_rgb(upright)
    rgb.info = {}  # the encoder would copy the ICC profile, DPI and EXIF from info
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=_COMFY_JPEG_QUALITY, subsampling=0)
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


def open_image(fp: BinaryIO) -> ImageFile.ImageFile:
    _register_heif()
    return Image.open(fp, formats=PILLOW_FORMATS)


@contextlib.contextmanager
def decoding_errors() -> Iterator[None]:
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
