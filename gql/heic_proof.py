"""Proving a HEIC/HEIF decodable in bounded memory: libheif's streaming reader, tile by tile.

pillow-heif reads the whole file into memory and decodes the whole picture to RGB (about 100 MiB
for a 9-megapixel photo). Here libheif reads the file through a ``heif_reader`` over the file
object (read straight into libheif's buffers in pieces of at most 1 MiB; libheif reads the boxes,
then each tile's data when it decodes it), the primary image's size is checked before anything
is decoded, and then:

- a grid image (what phones write: 512x512 HEVC tiles, each an image item of its own) is decoded
  one tile at a time, each tile decoded (in its own colour space) and freed before the next,
  following libheif's full grid decode as pillow-heif runs it (non-strict): every tile must be an
  image, of the same valid size as the first, covering its share of the canvas; a tile after the
  first that cannot be read or decoded is skipped (the full decode leaves a hole there too);
  decoded tiles must share the first one's chroma format; at least one tile must decode. libheif
  keeps each tile's decoder and last picture until its context is freed, so the tiles are
  decoded in a fresh context per 4 MiB of pixels. A grid with an alpha channel (its alpha is a
  picture of its own) or with tiles over `WHOLE_DECODE_PIXELS` is `NOT_PROVEN`;
- an image of one tile is decoded whole (to RGB, as pillow-heif does) only when that is bounded:
  at most `WHOLE_DECODE_PIXELS`, from a file of at most `WHOLE_DECODE_BYTES` (libheif reads an
  image's compressed data whole); anything larger is `NOT_PROVEN`, and the caller falls back to
  pillow-heif's full decode.

The file is judged as pillow-heif's opener judges it: its top-level images are those whose handle
and preferred colour space libheif can give, and exactly one must be left (more is a multi-image
file); what the opener reads besides the pixels (metadata blocks, colour profile, depth and
auxiliary image handles, camera matrices) must be readable. libheif runs with no decoding threads
of its own (the reader is a Python file object). tests/gql/test_heic_proof.py holds the verdicts
to pillow-heif's on damaged files.

libheif is the copy pillow-heif's wheel bundles, bound in `gql.libheif`; ``available()`` says
whether it and every function used here could be loaded (the caller falls back to pillow-heif
otherwise).
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from comfy.images import ImageTooLarge, UnsupportedImage
from gql import libheif
from gql.libheif import available

__all__ = ["WHOLE_DECODE_BYTES", "WHOLE_DECODE_PIXELS", "HeifImage", "Verdict", "available", "prove_heic"]

_MIB = 1024 * 1024
# A picture of one tile is decoded whole up to this size: YCbCr 4:2:0 plus RGB, ~4.5 bytes a pixel.
WHOLE_DECODE_PIXELS = 2_000_000
# ... and only from a file this small: libheif reads an image's compressed data whole.
WHOLE_DECODE_BYTES = 8 * _MIB
_MAX_TILES = 256 * 256  # a grid's own limit
# Decoded pictures libheif keeps per context (each tile item keeps its decoder and last picture,
# ~1.5 bytes a pixel): a grid is decoded in a fresh context per this much.
_TILE_BYTES_PER_CONTEXT = 4 * _MIB
# pillow-heif's opener copies every metadata block (EXIF, XMP) and colour profile; more than this
# is left to it (`NOT_PROVEN`) rather than read here.
_MAX_METADATA_BYTES = 4 * _MIB
_NCLX = int.from_bytes(b"nclx", "big")
_AUX_OMIT_ALPHA_AND_DEPTH = 2 | 4


class Verdict(enum.Enum):
    PROVEN = "proven"
    NOT_PROVEN = "not proven"  # too big to decode whole in bounded memory: the caller decides


@dataclass(frozen=True)
class HeifImage:
    width: int  # after libheif's transformations (rotation, crop), as pillow-heif reports it
    height: int


def prove_heic(fp: BinaryIO, *, max_pixels: int) -> tuple[HeifImage, Verdict]:
    """The primary image's size and whether it was proven to decode (``NOT_PROVEN``: no bounded
    way to; the caller falls back to a full decode). Raises ``UnsupportedImage`` for a file
    pillow-heif would refuse, ``ImageTooLarge`` past ``max_pixels`` (before any decoding)."""
    lib = libheif.library()
    if lib is None:
        raise RuntimeError("libheif could not be loaded: check available() first")
    reader = libheif.FileReader(fp)
    try:
        with _opened(lib, reader) as context:
            result = _prove_primary(lib, context, reader, max_pixels)
    except UnsupportedImage:
        if reader.failed:  # the file could not be read: not the uploader's fault
            raise OSError("reading the upload failed") from None
        raise
    if reader.failed:
        raise OSError("reading the upload failed")
    return result


@contextmanager
def _opened(lib: ctypes.CDLL, reader: libheif.FileReader) -> Iterator[int]:
    """A libheif context over the file (its boxes parsed, no data read), freed on leaving."""
    context = lib.heif_context_alloc()
    if not context:
        raise MemoryError("libheif could not make a context")
    try:
        lib.heif_context_set_max_decoding_threads(context, 0)
        reader.fp.seek(0)  # libheif reads from where the file stands
        libheif.check(lib.heif_context_read_from_reader(context, ctypes.byref(reader.struct), None, None))
        yield int(context)
    finally:
        lib.heif_context_free(context)


def _prove_primary(
    lib: ctypes.CDLL, context: int, reader: libheif.FileReader, max_pixels: int
) -> tuple[HeifImage, Verdict]:
    primary = ctypes.c_uint32()
    libheif.check(lib.heif_context_get_primary_image_ID(context, ctypes.byref(primary)))
    count = lib.heif_context_get_number_of_top_level_images(context)
    ids = (ctypes.c_uint32 * max(count, 1))()
    count = lib.heif_context_get_list_of_top_level_image_IDs(context, ids, count)
    # pillow-heif keeps the top-level images it can get a handle and a colour space for.
    usable = [item for item in ids[:count] if _usable(lib, context, item, item == primary.value)]
    if not usable:
        raise UnsupportedImage("the HEIF has no image that can be decoded")
    if len(usable) > 1:
        raise UnsupportedImage("animated and multi-image files are not supported")
    with _top_level_handle(lib, context, usable[0], usable[0] == primary.value) as handle:
        width, height = lib.heif_image_handle_get_width(handle), lib.heif_image_handle_get_height(handle)
        if width <= 0 or height <= 0:
            raise UnsupportedImage("the HEIF has no pixels")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"the image has {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
            )
        image = HeifImage(width, height)
        if not _opens_like_pillow_heif(lib, handle):
            return image, Verdict.NOT_PROVEN
        grid = _grid(lib, handle)
        if grid is not None:
            if grid.tile_width * grid.tile_height > WHOLE_DECODE_PIXELS:
                return image, Verdict.NOT_PROVEN  # tiles too large to decode one at a time in bounded memory
            _decode_grid(lib, context, handle, grid, reader)
            return image, Verdict.PROVEN
        if width * height > WHOLE_DECODE_PIXELS or reader.size > WHOLE_DECODE_BYTES:
            return image, Verdict.NOT_PROVEN
        colorspace, chroma, channel = _output_format(lib, handle)
        with _options(lib) as options:
            _decode(lib, handle, colorspace, chroma, channel, options)
        return image, Verdict.PROVEN


def _top_level_handle(lib: ctypes.CDLL, context: int, item: int, primary: bool) -> Any:
    if primary:
        return libheif.handle(lib, lib.heif_context_get_primary_image_handle, context)
    return libheif.handle(lib, lib.heif_context_get_image_handle, context, item)


def _usable(lib: ctypes.CDLL, context: int, item: int, primary: bool) -> bool:
    try:
        with _top_level_handle(lib, context, item, primary) as handle:
            colorspace, chroma = ctypes.c_int(), ctypes.c_int()
            error = lib.heif_image_handle_get_preferred_decoding_colorspace(
                handle, ctypes.byref(colorspace), ctypes.byref(chroma)
            )
            return bool(error.code == 0)
    except UnsupportedImage:
        return False


def _opens_like_pillow_heif(lib: ctypes.CDLL, handle: int) -> bool:
    """Raise where pillow-heif's opener fails on what it reads of the image besides its pixels:
    each metadata block (one it cannot read fails it), the colour profile, the depth and auxiliary
    images' handles and types, the camera matrices. False when
    the metadata is too large to read here."""
    count = lib.heif_image_handle_get_number_of_metadata_blocks(handle, None)
    ids = (ctypes.c_uint32 * max(count, 1))()
    count = lib.heif_image_handle_get_list_of_metadata_block_IDs(handle, None, ids, count)
    sizes = [lib.heif_image_handle_get_metadata_size(handle, item) for item in ids[:count]]
    profile = lib.heif_image_handle_get_color_profile_type(handle)
    profile_size = lib.heif_image_handle_get_raw_color_profile_size(handle) if profile and profile != _NCLX else 0
    if sum(sizes) + profile_size > _MAX_METADATA_BYTES:
        return False
    for item, size in zip(ids[:count], sizes, strict=True):
        buffer = ctypes.create_string_buffer(max(size, 1))
        libheif.check(lib.heif_image_handle_get_metadata(handle, item, buffer))
    if profile == _NCLX:
        nclx = ctypes.c_void_p()
        libheif.check(lib.heif_image_handle_get_nclx_color_profile(handle, ctypes.byref(nclx)))
        lib.heif_nclx_color_profile_free(nclx)
    elif profile_size:
        libheif.check(lib.heif_image_handle_get_raw_color_profile(handle, ctypes.create_string_buffer(profile_size)))
    count = lib.heif_image_handle_get_number_of_depth_images(handle)
    depth = (ctypes.c_uint32 * max(count, 1))()
    for item in depth[: lib.heif_image_handle_get_list_of_depth_image_IDs(handle, depth, count)]:
        with libheif.handle(lib, lib.heif_image_handle_get_depth_image_handle, handle, item):
            pass
    count = lib.heif_image_handle_get_number_of_auxiliary_images(handle, _AUX_OMIT_ALPHA_AND_DEPTH)
    aux = (ctypes.c_uint32 * max(count, 1))()
    for item in aux[
        : lib.heif_image_handle_get_list_of_auxiliary_image_IDs(handle, _AUX_OMIT_ALPHA_AND_DEPTH, aux, count)
    ]:
        with libheif.handle(lib, lib.heif_image_handle_get_auxiliary_image_handle, handle, item) as aux_handle:
            kind = ctypes.c_char_p()
            libheif.check(lib.heif_image_handle_get_auxiliary_type(aux_handle, ctypes.byref(kind)))
            lib.heif_image_handle_release_auxiliary_type(aux_handle, ctypes.byref(kind))
    if lib.heif_image_handle_has_camera_intrinsic_matrix(handle):
        libheif.check(lib.heif_image_handle_get_camera_intrinsic_matrix(handle, ctypes.byref((ctypes.c_double * 5)())))
    if lib.heif_image_handle_has_camera_extrinsic_matrix(handle):
        matrix = ctypes.c_void_p()
        libheif.check(lib.heif_image_handle_get_camera_extrinsic_matrix(handle, ctypes.byref(matrix)))
        try:
            libheif.check(
                lib.heif_camera_extrinsic_matrix_get_rotation_matrix(matrix, ctypes.byref((ctypes.c_double * 9)()))
            )
        finally:
            lib.heif_camera_extrinsic_matrix_release(matrix)
    return True


def _output_format(lib: ctypes.CDLL, handle: int) -> tuple[int, int, int]:
    """What pillow-heif decodes to: grey for a monochrome image without alpha, else 8-bit RGB(A)."""
    colorspace, chroma = ctypes.c_int(), ctypes.c_int()
    libheif.check(
        lib.heif_image_handle_get_preferred_decoding_colorspace(handle, ctypes.byref(colorspace), ctypes.byref(chroma))
    )
    alpha = lib.heif_image_handle_has_alpha_channel(handle)
    if chroma.value == libheif.CHROMA_MONOCHROME and colorspace.value == libheif.COLORSPACE_MONOCHROME and not alpha:
        return libheif.COLORSPACE_MONOCHROME, libheif.CHROMA_MONOCHROME, libheif.CHANNEL_Y
    return libheif.COLORSPACE_RGB, libheif.CHROMA_RGBA if alpha else libheif.CHROMA_RGB, libheif.CHANNEL_INTERLEAVED


def _grid(lib: ctypes.CDLL, handle: int) -> libheif.Tiling | None:
    """The grid of an image made of grid tiles (as stored, before rotation), else None. A grid
    with an alpha channel is left to the full decode (its alpha is a picture of its own)."""
    tiling = libheif.Tiling(version=1)
    libheif.check(lib.heif_image_handle_get_image_tiling(handle, 0, ctypes.byref(tiling)))
    tiles = tiling.num_columns * tiling.num_rows
    if tiles <= 1 or tiles > _MAX_TILES or tiling.number_of_extra_dimensions:
        return None
    if lib.heif_image_handle_has_alpha_channel(handle):
        return None
    item = ctypes.c_uint32()
    if lib.heif_image_handle_get_grid_image_tile_id(handle, 0, 0, 0, ctypes.byref(item)).code != 0:
        return None  # tiled, but not a grid of image items
    return tiling


def _decode_grid(lib: ctypes.CDLL, context: int, handle: int, grid: libheif.Tiling, reader: libheif.FileReader) -> None:
    """Decode the grid's tiles one by one, as libheif's full grid decode does (non-strict, as
    pillow-heif runs it) but without pasting them into a canvas.

    As there: every tile must be an image; every tile but the first may be unreadable or fail to
    decode (it is skipped: the picture keeps a hole); a tile's size must be valid, the same as the
    first's and cover its share of the canvas; every decoded tile must have the first decoded
    tile's chroma format; and at least one tile must decode. Tiles are decoded in their own colour
    space (the conversion to RGB is of the whole picture in the full decode, and cannot fail for a
    decoded HEVC picture).

    libheif keeps each image item's decoder, with its last picture, until the context is freed, so
    the tiles are decoded in a fresh context per `_TILE_BYTES_PER_CONTEXT` of pixels."""
    ispe = (lib.heif_image_handle_get_ispe_width(handle), lib.heif_image_handle_get_ispe_height(handle))
    if ispe != (0, 0) and ispe != (grid.image_width, grid.image_height):
        raise UnsupportedImage("the HEIF grid is not of the size the file signals")
    items = [_tile_id(lib, handle, grid, index) for index in range(grid.num_columns * grid.num_rows)]
    for item in items:  # every tile must at least be an image
        tile = _tile_handle(lib, context, item)
        if tile is not None:
            lib.heif_image_handle_release(tile)
    per_context = max(1, _TILE_BYTES_PER_CONTEXT // max(1, 3 * grid.tile_width * grid.tile_height))
    first_size: tuple[int, int] | None = None
    first_chroma: int | None = None
    with _options(lib) as options:
        for start in range(0, len(items), per_context):
            with _opened(lib, reader) as fresh:
                for index in range(start, min(len(items), start + per_context)):
                    tile = _tile_handle(lib, fresh, items[index])
                    if tile is None:
                        if index == 0:
                            raise UnsupportedImage("the first tile of the HEIF grid is broken")
                        continue  # a broken tile after the first: skipped
                    try:
                        size = (lib.heif_image_handle_get_width(tile), lib.heif_image_handle_get_height(tile))
                        _check_tile_size(size, first_size or size, grid)
                        first_size = first_size or size
                        try:
                            chroma = _decode(
                                lib, tile, libheif.COLORSPACE_UNDEFINED, libheif.CHROMA_UNDEFINED, None, options
                            )
                        except UnsupportedImage:
                            continue  # a tile that does not decode: skipped
                    finally:
                        lib.heif_image_handle_release(tile)
                    first_chroma = chroma if first_chroma is None else first_chroma
                    if chroma != first_chroma:
                        raise UnsupportedImage("a HEIF grid tile has another chroma format than the first")
    if first_chroma is None:
        raise UnsupportedImage("no tile of the HEIF grid decodes")


def _check_tile_size(size: tuple[int, int], first: tuple[int, int], grid: libheif.Tiling) -> None:
    if size[0] <= 0 or size[1] <= 0:
        raise UnsupportedImage("a HEIF grid tile has no pixels")
    if size[0] < grid.image_width // grid.num_columns or size[1] < grid.image_height // grid.num_rows:
        raise UnsupportedImage("the HEIF's grid tiles do not cover the image")
    if size != first:
        raise UnsupportedImage("the HEIF's grid tiles have different sizes")


def _tile_id(lib: ctypes.CDLL, handle: int, grid: libheif.Tiling, index: int) -> int:
    """The item of the grid's `index`th tile, in raster order as stored."""
    item = ctypes.c_uint32()
    column, row = index % grid.num_columns, index // grid.num_columns
    libheif.check(lib.heif_image_handle_get_grid_image_tile_id(handle, 0, column, row, ctypes.byref(item)))
    return int(item.value)


def _tile_handle(lib: ctypes.CDLL, context: int, item: int) -> int | None:
    """A handle on a grid tile (to release), or None when the tile is an image libheif could not
    read. A tile that is no image at all fails the whole grid."""
    handle = ctypes.c_void_p()
    error = lib.heif_context_get_image_handle(context, item, ctypes.byref(handle))
    if error.code == libheif.USAGE_ERROR and error.subcode == libheif.NONEXISTING_ITEM:
        raise UnsupportedImage("a tile of the HEIF grid is not an image")
    if error.code != 0 or not handle.value:
        return None
    return int(handle.value)


@contextmanager
def _options(lib: ctypes.CDLL) -> Iterator[int]:
    pointer = lib.heif_decoding_options_alloc()
    if not pointer:
        raise MemoryError("libheif could not allocate decoding options")
    try:
        ctypes.cast(pointer, ctypes.POINTER(libheif.DecodingOptions)).contents.convert_hdr_to_8bit = 1
        yield pointer
    finally:
        lib.heif_decoding_options_free(pointer)


def _decode(lib: ctypes.CDLL, handle: int, colorspace: int, chroma: int, channel: int | None, options: int) -> int:
    """Decode `handle` whole into `colorspace`/`chroma` and free it; the decoded chroma format."""
    image = ctypes.c_void_p()
    error = lib.heif_decode_image(handle, ctypes.byref(image), colorspace, chroma, options)
    try:
        libheif.check(error)
        stride = ctypes.c_int()
        if channel is not None and not lib.heif_image_get_plane_readonly(image, channel, ctypes.byref(stride)):
            raise UnsupportedImage("the HEIF decodes to no pixels")
        return int(lib.heif_image_get_chroma_format(image))
    finally:
        if image.value:
            lib.heif_image_release(image)
