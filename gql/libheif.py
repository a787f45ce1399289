"""pillow-heif's own libheif through ctypes: the functions the HEIF proof calls, a ``heif_reader``
over a Python file object, and libheif's errors as ``UnsupportedImage``.

The library is the copy pillow-heif's wheel bundles (``pillow_heif.libs``); ``library()`` is None
when it, or any function used here, could not be loaded (the caller falls back to pillow-heif).
Calls go through ctypes, which releases the GIL while libheif works (and takes it back for the
reader's callbacks).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pillow_heif

from comfy.images import UnsupportedImage

# The reader hands libheif the file in pieces of at most this much.
_PIECE = 1024 * 1024

COLORSPACE_UNDEFINED = 99
CHROMA_UNDEFINED = 99
COLORSPACE_RGB = 1
COLORSPACE_MONOCHROME = 2
CHROMA_MONOCHROME = 0
CHROMA_RGB = 10
CHROMA_RGBA = 11
CHANNEL_Y = 0
CHANNEL_INTERLEAVED = 10
USAGE_ERROR = 5
NONEXISTING_ITEM = 2000
_GROW_SIZE_REACHED = 0
_GROW_BEYOND_EOF = 2


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


_GET_POSITION = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)
_READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_WAIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)


class _Reader(ctypes.Structure):
    _fields_ = [
        ("reader_api_version", ctypes.c_int),
        ("get_position", _GET_POSITION),
        ("read", _READ),
        ("seek", _SEEK),
        ("wait_for_file_size", _WAIT),
        # version 2 (left NULL; libheif reads them only for readers of version 2)
        ("request_range", ctypes.c_void_p),
        ("preload_range_hint", ctypes.c_void_p),
        ("release_file_range", ctypes.c_void_p),
        ("release_error_msg", ctypes.c_void_p),
    ]


class Tiling(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_int),
        *((name, ctypes.c_uint32) for name in ("num_columns", "num_rows", "tile_width", "tile_height")),
        *((name, ctypes.c_uint32) for name in ("image_width", "image_height", "top_offset", "left_offset")),
        ("number_of_extra_dimensions", ctypes.c_uint8),
        ("extra_dimension_size", ctypes.c_uint32 * 8),
    ]


class DecodingOptions(ctypes.Structure):
    """The leading fields of ``heif_decoding_options`` (allocated by libheif, never by us)."""

    _fields_ = [
        ("version", ctypes.c_uint8),
        ("ignore_transformations", ctypes.c_uint8),
        ("start_progress", ctypes.c_void_p),
        ("on_progress", ctypes.c_void_p),
        ("end_progress", ctypes.c_void_p),
        ("progress_user_data", ctypes.c_void_p),
        ("convert_hdr_to_8bit", ctypes.c_uint8),
    ]


_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "heif_context_alloc": ([], _P),
    "heif_context_free": ([_P], None),
    "heif_context_set_max_decoding_threads": ([_P, ctypes.c_int], None),
    "heif_context_read_from_reader": ([_P, ctypes.POINTER(_Reader), _P, _P], Error),
    "heif_context_get_primary_image_ID": ([_P, ctypes.POINTER(ctypes.c_uint32)], Error),
    "heif_context_get_number_of_top_level_images": ([_P], ctypes.c_int),
    "heif_context_get_list_of_top_level_image_IDs": ([_P, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int], ctypes.c_int),
    "heif_context_get_image_handle": ([_P, ctypes.c_uint32, ctypes.POINTER(_P)], Error),
    "heif_context_get_primary_image_handle": ([_P, ctypes.POINTER(_P)], Error),
    "heif_image_handle_release": ([_P], None),
    "heif_image_handle_get_width": ([_P], ctypes.c_int),
    "heif_image_handle_get_height": ([_P], ctypes.c_int),
    "heif_image_handle_has_alpha_channel": ([_P], ctypes.c_int),
    "heif_image_handle_get_ispe_width": ([_P], ctypes.c_int),
    "heif_image_handle_get_ispe_height": ([_P], ctypes.c_int),
    "heif_image_handle_get_preferred_decoding_colorspace": (
        [_P, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
        Error,
    ),
    "heif_image_handle_get_image_tiling": ([_P, ctypes.c_int, ctypes.POINTER(Tiling)], Error),
    "heif_image_handle_get_grid_image_tile_id": (
        [_P, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)],
        Error,
    ),
    "heif_decode_image": ([_P, ctypes.POINTER(_P), ctypes.c_int, ctypes.c_int, _P], Error),
    "heif_decoding_options_alloc": ([], _P),
    "heif_decoding_options_free": ([_P], None),
    "heif_image_get_plane_readonly": ([_P, ctypes.c_int, ctypes.POINTER(ctypes.c_int)], _P),
    "heif_image_get_chroma_format": ([_P], ctypes.c_int),
    # what pillow-heif's opener reads of an image (any error there refuses the file)
    "heif_image_handle_get_number_of_metadata_blocks": ([_P, ctypes.c_char_p], ctypes.c_int),
    "heif_image_handle_get_list_of_metadata_block_IDs": (
        [_P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int],
        ctypes.c_int,
    ),
    "heif_image_handle_get_metadata_size": ([_P, ctypes.c_uint32], ctypes.c_size_t),
    "heif_image_handle_get_metadata": ([_P, ctypes.c_uint32, _P], Error),
    "heif_image_handle_get_color_profile_type": ([_P], ctypes.c_int),
    "heif_image_handle_get_nclx_color_profile": ([_P, ctypes.POINTER(_P)], Error),
    "heif_nclx_color_profile_free": ([_P], None),
    "heif_image_handle_get_raw_color_profile_size": ([_P], ctypes.c_size_t),
    "heif_image_handle_get_raw_color_profile": ([_P, _P], Error),
    "heif_image_handle_get_number_of_depth_images": ([_P], ctypes.c_int),
    "heif_image_handle_get_list_of_depth_image_IDs": (
        [_P, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int],
        ctypes.c_int,
    ),
    "heif_image_handle_get_depth_image_handle": ([_P, ctypes.c_uint32, ctypes.POINTER(_P)], Error),
    "heif_image_handle_get_number_of_auxiliary_images": ([_P, ctypes.c_int], ctypes.c_int),
    "heif_image_handle_get_list_of_auxiliary_image_IDs": (
        [_P, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int],
        ctypes.c_int,
    ),
    "heif_image_handle_get_auxiliary_image_handle": ([_P, ctypes.c_uint32, ctypes.POINTER(_P)], Error),
    "heif_image_handle_get_auxiliary_type": ([_P, ctypes.POINTER(ctypes.c_char_p)], Error),
    "heif_image_handle_release_auxiliary_type": ([_P, ctypes.POINTER(ctypes.c_char_p)], None),
    "heif_image_handle_has_camera_intrinsic_matrix": ([_P], ctypes.c_int),
    "heif_image_handle_get_camera_intrinsic_matrix": ([_P, ctypes.POINTER(ctypes.c_double * 5)], Error),
    "heif_image_handle_has_camera_extrinsic_matrix": ([_P], ctypes.c_int),
    "heif_image_handle_get_camera_extrinsic_matrix": ([_P, ctypes.POINTER(_P)], Error),
    "heif_camera_extrinsic_matrix_get_rotation_matrix": ([_P, ctypes.POINTER(ctypes.c_double * 9)], Error),
    "heif_camera_extrinsic_matrix_release": ([_P], None),
    "heif_image_release": ([_P], None),
}


@functools.cache
def library() -> ctypes.CDLL | None:
    bundled = Path(pillow_heif.__file__).resolve().parent.parent / "pillow_heif.libs"
    for candidate in sorted(bundled.glob("libheif-*.so*")):
        try:
            lib = ctypes.CDLL(str(candidate))
            for name, (argtypes, restype) in _SIGNATURES.items():
                function = getattr(lib, name)
                function.argtypes = argtypes
                function.restype = restype
        except (OSError, AttributeError):
            continue
        return lib
    return None


def available() -> bool:
    """Whether pillow-heif's libheif, with the streaming reader and tile decoding, could be loaded."""
    return library() is not None


class FileReader:
    """A ``heif_reader`` over a seekable file object; the callbacks must outlive the context."""

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        fp.seek(0, os.SEEK_END)
        self.size = fp.tell()
        self.failed = False
        self.struct = _Reader(1, _GET_POSITION(self._position), _READ(self._read), _SEEK(self._seek), _WAIT(self._wait))

    def _position(self, _: int | None) -> int:
        return self.fp.tell()

    def _read(self, data: int | None, size: int, _: int | None) -> int:
        """Read straight into libheif's buffer (no Python copy of the data), in pieces."""
        try:
            if not size:
                return 0
            target = memoryview((ctypes.c_char * size).from_address(data or 0)).cast("B")
            done = 0
            while done < size:
                count = self.fp.readinto(target[done : min(size, done + _PIECE)])  # type: ignore[attr-defined]
                if not count:
                    return 1
                done += count
        except Exception:  # an exception must not cross into C
            self.failed = True
            return 1
        return 0

    def _seek(self, position: int, _: int | None) -> int:
        if not 0 <= position <= self.size:
            return 1
        try:
            self.fp.seek(position)
        except Exception:  # likewise
            self.failed = True
            return 1
        return 0

    def _wait(self, target: int, _: int | None) -> int:
        return _GROW_SIZE_REACHED if target <= self.size else _GROW_BEYOND_EOF


def check(error: Error) -> None:
    if error.code != 0:
        message = (error.message or b"").decode("utf-8", "replace").strip()
        raise UnsupportedImage(f"the HEIF is corrupt or unsupported ({message})" if message else "corrupt HEIF")


@contextmanager
def handle(lib: ctypes.CDLL, getter: Any, *args: Any) -> Iterator[int]:
    handle = ctypes.c_void_p()
    check(getter(*args, ctypes.byref(handle)))
    try:
        yield int(handle.value or 0)
    finally:
        if handle.value:
            lib.heif_image_handle_release(handle)
