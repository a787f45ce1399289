"""Proving a WebP decodable without holding it: libwebp's incremental decoder, scaled down.

Pillow's WebP plugin reads the whole file into memory and decodes the full canvas (4 bytes per
pixel, twice for its animation decoder): about 290 MiB for a 48 MiB photo. Here the file is fed to
libwebp's incremental decoder (``WebPIDecode``/``WebPIAppend``) in pieces of at most 1 MiB, with
output scaling on, so the output buffer is 1/8 of each side. libwebp still reads every bit of the
bitstream and fails on what a full decode fails on (a truncated or corrupt bitstream).

What stays in memory is libwebp's own working set, which depends on the kind of WebP:
- lossy (VP8): a few macroblock rows; the compressed data is dropped once decoded.
- an alpha channel (ALPH): the alpha plane at full size, 1 byte per pixel.
- lossless (VP8L): the full-size ARGB image, 4 bytes per pixel (backward references may reach
  anywhere earlier in the image, so libwebp keeps it all) and the compressed data seen so far.

A WebP in an animation container with exactly one frame is judged by that frame, rewrapped as a
still WebP on the fly; more frames are refused (animations are not accepted). The container is
checked as libwebp's demuxer (Pillow's path) checks it; beyond that, a file of more than
`MAX_CHUNKS` chunks is refused, which Pillow would accept.

libwebp is the copy Pillow's wheel bundles (``pillow.libs``), else the system's; ``available()``
says whether one was found (the caller falls back to Pillow's full decode otherwise). Calls go
through ctypes, which releases the GIL while libwebp works.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import PIL

from comfy.images import UnsupportedImage

__all__ = ["MAX_CHUNKS", "WebPHeader", "available", "prove_webp", "read_header"]

_PIECE = 1024 * 1024
_SCALE = 8
# The decoder ABI our structures follow (libwebp >= 0.5); libwebp checks the major byte only.
_DECODER_ABI_VERSION = 0x0209
_MODE_RGBA = 1
_VP8_STATUS_OK = 0
_VP8_STATUS_SUSPENDED = 5
_HEADER_BYTES = 64 * 1024  # WebPGetFeatures needs the first chunks only
_ANIMATION_FLAG = 0x02
_ALPHA_FLAG = 0x10
_VALID_FLAGS = 0x3E  # ICC profile, alpha, EXIF, XMP, animation; the demuxer refuses the others
# A photo has a handful of chunks (VP8X, ICCP, ALPH, VP8, EXIF, XMP); walking millions of empty
# ones would cost the API seconds of Python for a 50 MiB upload, so more than this is refused.
MAX_CHUNKS = 1000
# Larger files on disk are mapped rather than copied into libwebp's input buffer.
_MAP_FROM_BYTES = 4 * _PIECE


class _Features(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("width", "height", "has_alpha", "has_animation", "format")] + [
        ("pad", ctypes.c_uint32 * 5)
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("y", "u", "v", "a")] + [
        *((name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class _Planes(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _Planes),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_int)
        for name in (
            "bypass_filtering",
            "no_fancy_upsampling",
            "use_cropping",
            "crop_left",
            "crop_top",
            "crop_width",
            "crop_height",
            "use_scaling",
            "scaled_width",
            "scaled_height",
            "use_threads",
            "dithering_strength",
            "flip",
            "alpha_dithering_strength",
        )
    ] + [("pad", ctypes.c_uint32 * 5)]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


@functools.cache
def _library() -> ctypes.CDLL | None:
    bundled = Path(PIL.__file__).resolve().parent.parent / "pillow.libs"
    candidates = [str(path) for path in sorted(bundled.glob("libwebp-*.so*"))]
    system = ctypes.util.find_library("webp")
    if system:
        candidates.append(system)
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            lib.WebPGetFeaturesInternal.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int]
            lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.WebPIDecode.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            lib.WebPIDecode.restype = ctypes.c_void_p
            lib.WebPIAppend.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            lib.WebPIUpdate.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            lib.WebPIDelete.argtypes = [ctypes.c_void_p]
            lib.WebPIDelete.restype = None
            lib.WebPFreeDecBuffer.argtypes = [ctypes.c_void_p]
            lib.WebPFreeDecBuffer.restype = None
        except (OSError, AttributeError):
            continue
        return lib
    return None


def available() -> bool:
    """Whether a libwebp with the incremental decoder could be loaded."""
    return _library() is not None


def _loaded() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError("libwebp could not be loaded: check available() first")
    return lib


@dataclass(frozen=True)
class WebPHeader:
    width: int  # the canvas
    height: int
    frames: int  # 1 for a still image; ANMF chunks in an animation container
    image_end: int  # a still image: where its VP8/VP8L chunk's payload ends (the decoder reads no further)


@dataclass(frozen=True)
class _Chunk:
    kind: bytes
    offset: int  # of the chunk's header
    size: int  # of the payload, without padding


def read_header(fp: BinaryIO) -> WebPHeader:
    """The canvas size and frame count, from the first chunks and the chunk headers only."""
    fp.seek(0)
    head = fp.read(_HEADER_BYTES)
    lib = _loaded()
    features = _Features()
    if lib.WebPGetFeaturesInternal(head, len(head), ctypes.byref(features), _DECODER_ABI_VERSION) != _VP8_STATUS_OK:
        raise UnsupportedImage("the WebP header is truncated or corrupt")
    fp.seek(0, os.SEEK_END)
    if 8 + struct.unpack("<I", head[4:8])[0] > fp.tell():
        raise UnsupportedImage("the WebP is truncated")  # its RIFF container says it is longer
    # Every chunk must lie inside the container, as libwebp's demuxer (Pillow's path) demands.
    if head[12:16] == b"VP8X" and len(head) > 20 and head[20] & ~_VALID_FLAGS:
        raise UnsupportedImage("a WebP with unknown feature flags")
    chunks = list(_chunks(fp))
    frames = sum(1 for chunk in chunks if chunk.kind == b"ANMF")
    if not features.has_animation:
        frames = 1
    elif frames:
        kinds = [chunk.kind for chunk in chunks]
        first = kinds.index(b"ANMF")
        if b"ANIM" not in kinds[:first] or chunks[kinds.index(b"ANIM")].size + 1 < 6:
            raise UnsupportedImage("a WebP animation without its ANIM header")
    image = next((chunk for chunk in chunks if chunk.kind in (b"VP8 ", b"VP8L")), None)
    image_end = image.offset + 8 + image.size if image is not None else 0
    return WebPHeader(features.width, features.height, frames, image_end)


def prove_webp(fp: BinaryIO, header: WebPHeader) -> None:
    """Decode the (single) picture at 1/8 scale, fed in pieces; UnsupportedImage if it fails."""
    if header.frames != 1:
        raise UnsupportedImage("animated and multi-image files are not supported")
    lib = _loaded()
    if header.width <= 0 or header.height <= 0:
        raise UnsupportedImage("the WebP has no pixels")
    if _is_animation(fp):
        _decode(lib, _frame_stream(fp, header))
        return
    if not header.image_end:
        raise UnsupportedImage("the WebP has no image data")
    with _mapped(fp) as view:
        _decode(lib, _file_stream(fp, header.image_end), mapped=view, end=header.image_end)


@contextlib.contextmanager
def _mapped(fp: BinaryIO) -> Iterator[mmap.mmap | None]:
    """The file mapped (copy-on-write, never written) when it is a large file on disk, else None."""
    fp.seek(0, os.SEEK_END)
    if fp.tell() < _MAP_FROM_BYTES:
        yield None
        return
    try:
        fileno = fp.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        yield None
        return
    with mmap.mmap(fileno, 0, access=mmap.ACCESS_COPY) as view:
        yield view


def _decode(lib: ctypes.CDLL, pieces: Iterator[bytes], mapped: mmap.mmap | None = None, end: int = 0) -> None:
    """Run the incremental decoder over `pieces` (appended: libwebp keeps what it still needs), or
    over the growing prefix of `mapped` (libwebp reads the mapping in place; the pages it has read
    are given back to the kernel as it goes, and fault in again from the file should it reread)."""
    first = next(pieces, b"")
    features = _Features()
    if lib.WebPGetFeaturesInternal(first, len(first), ctypes.byref(features), _DECODER_ABI_VERSION) != _VP8_STATUS_OK:
        raise UnsupportedImage("the WebP header is truncated or corrupt")
    config = _Config()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _DECODER_ABI_VERSION):
        raise RuntimeError("libwebp refused the decoder ABI version")
    config.output.colorspace = _MODE_RGBA
    config.options.use_scaling = 1
    config.options.scaled_width = max(1, features.width // _SCALE)
    config.options.scaled_height = max(1, features.height // _SCALE)
    decoder = lib.WebPIDecode(None, 0, ctypes.byref(config))
    if not decoder:
        raise MemoryError("libwebp could not make a decoder")
    try:
        status = _feed_mapped(lib, decoder, mapped, end) if mapped is not None else _feed(lib, decoder, first, pieces)
    finally:
        lib.WebPIDelete(decoder)
        lib.WebPFreeDecBuffer(ctypes.byref(config.output))
    if status == _VP8_STATUS_SUSPENDED:
        raise UnsupportedImage("the WebP is truncated")
    if status != _VP8_STATUS_OK:
        raise UnsupportedImage("the image data is truncated or corrupt")


def _feed(lib: ctypes.CDLL, decoder: int, first: bytes, pieces: Iterator[bytes]) -> int:
    status = _VP8_STATUS_SUSPENDED
    piece = first
    while piece:
        status = lib.WebPIAppend(decoder, piece, len(piece))
        if status != _VP8_STATUS_SUSPENDED:
            break
        piece = next(pieces, b"")
    return int(status)


def _feed_mapped(lib: ctypes.CDLL, decoder: int, view: mmap.mmap, stop: int) -> int:
    status = _VP8_STATUS_SUSPENDED
    buffer = (ctypes.c_char * len(view)).from_buffer(view)
    try:
        address = ctypes.addressof(buffer)
        for end in range(min(_PIECE, stop), stop + _PIECE, _PIECE):
            end = min(end, stop)
            status = lib.WebPIUpdate(decoder, address, end)
            if status != _VP8_STATUS_SUSPENDED or end == stop:
                break
            done = (end - _PIECE) // mmap.PAGESIZE * mmap.PAGESIZE
            if done > 0:
                view.madvise(mmap.MADV_DONTNEED, 0, done)
    finally:
        del buffer
    return int(status)


def _file_stream(fp: BinaryIO, stop: int) -> Iterator[bytes]:
    fp.seek(0)
    remaining = stop
    while remaining and (piece := fp.read(min(_PIECE, remaining))):
        remaining -= len(piece)
        yield piece


def _is_animation(fp: BinaryIO) -> bool:
    fp.seek(12)
    vp8x = fp.read(18)
    return len(vp8x) == 18 and vp8x[:4] == b"VP8X" and bool(vp8x[8] & _ANIMATION_FLAG)


def _chunks(fp: BinaryIO, start: int = 12, end: int | None = None) -> Iterator[_Chunk]:
    """The chunks between `start` and `end` (default: the RIFF's end), by their headers alone."""
    if end is None:
        fp.seek(4)
        end = 8 + struct.unpack("<I", fp.read(4))[0]
    offset = start
    count = 0
    while offset + 8 <= end:
        count += 1
        if count > MAX_CHUNKS:
            raise UnsupportedImage(f"a WebP of more than {MAX_CHUNKS} chunks")
        fp.seek(offset)
        header = fp.read(8)
        if len(header) < 8:
            raise UnsupportedImage("the WebP is truncated")
        kind, size = struct.unpack("<4sI", header)
        if offset + 8 + size > end:
            raise UnsupportedImage("a WebP chunk runs past the end of its container")
        yield _Chunk(kind, offset, size)
        offset += 8 + size + (size & 1)
    if offset < end:
        raise UnsupportedImage("stray bytes in a WebP container")


def _frame_stream(fp: BinaryIO, header: WebPHeader) -> Iterator[bytes]:
    """The only frame of an animation as a still WebP: a RIFF and VP8X header of our own, then the
    frame's ALPH/VP8/VP8L chunks copied from the file piece by piece.

    As in libwebp's demuxer, the frame's size is its bitstream's (the ANMF fields are not used)
    and the frame must lie inside the canvas."""
    lib = _loaded()
    chunks = list(_chunks(fp))
    frame = next(chunk for chunk in chunks if chunk.kind == b"ANMF")
    if frame.size < 16:
        raise UnsupportedImage("malformed WebP animation frame")
    fp.seek(frame.offset + 8)
    fields = fp.read(16)
    x, y = (int.from_bytes(fields[i : i + 3], "little") * 2 for i in (0, 3))
    declared_width, declared_height = (int.from_bytes(fields[i : i + 3], "little") + 1 for i in (6, 9))
    if declared_width * declared_height >= 1 << 32:  # the demuxer's limit; else it uses the bitstream's size
        raise UnsupportedImage("malformed WebP animation frame")
    parts = list(_chunks(fp, frame.offset + 8 + 16, frame.offset + 8 + frame.size))
    image = next((part for part in parts if part.kind in (b"VP8 ", b"VP8L")), None)
    if image is None:
        raise UnsupportedImage("a WebP animation frame without an image")
    fp.seek(image.offset)
    probe = fp.read(8 + 32)
    probe = b"RIFF" + struct.pack("<I", 4 + 8 + image.size + (image.size & 1)) + b"WEBP" + probe
    features = _Features()
    if lib.WebPGetFeaturesInternal(probe, len(probe), ctypes.byref(features), _DECODER_ABI_VERSION) != _VP8_STATUS_OK:
        raise UnsupportedImage("the image data is truncated or corrupt")
    width, height = features.width, features.height
    if x + width > header.width or y + height > header.height:
        raise UnsupportedImage("a WebP animation frame lies outside its canvas")
    flags = _ALPHA_FLAG if any(part.kind == b"ALPH" for part in parts) else 0
    body = sum(8 + part.size + (part.size & 1) for part in parts)
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    yield b"RIFF" + struct.pack("<I", 4 + len(vp8x) + body) + b"WEBP" + vp8x
    for part in parts:
        remaining = 8 + part.size + (part.size & 1)
        fp.seek(part.offset)
        while remaining:
            piece = fp.read(min(remaining, _PIECE))
            if not piece:
                raise UnsupportedImage("the WebP is truncated")
            remaining -= len(piece)
            yield piece
