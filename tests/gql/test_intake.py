"""inspect_image: which uploads are accepted, what they are, and how the rest are refused."""

from __future__ import annotations

import contextlib
import io
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from comfy.images import ImageRejected, ImageTooLarge, UnsupportedImage
from gql.intake import ImageInfo, inspect_image
from tests.fixtures import images as samples

MAX_PIXELS = 150_000_000  # the contract's default MAX_IMAGE_PIXELS
BOMB_TIME_LIMIT_SECONDS = 2.0  # header-only refusal; decoding any of these bombs would take far longer


def inspect(data: bytes, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    return inspect_image(io.BytesIO(data), max_pixels=max_pixels)


def test_jpeg_is_identified_as_jpeg() -> None:
    assert inspect(samples.jpeg_bytes(64, 48)) == ImageInfo("jpeg", "jpg", "image/jpeg", 64, 48)


def test_png_is_identified_as_png() -> None:
    assert inspect(samples.png_bytes(64, 48)) == ImageInfo("png", "png", "image/png", 64, 48)


@pytest.mark.parametrize("lossless", [False, True], ids=["lossy", "lossless"])
def test_webp_is_identified_as_webp(lossless: bool) -> None:
    data = samples.webp_bytes(64, 48, lossless=lossless)
    assert inspect(data) == ImageInfo("webp", "webp", "image/webp", 64, 48)


def test_heic_brand_is_identified_as_heic() -> None:
    assert inspect(samples.heic_bytes(64, 48)) == ImageInfo("heic", "heic", "image/heic", 64, 48)


def test_generic_heif_brand_gets_the_heif_extension() -> None:
    data = samples.heic_bytes(64, 48, brand=b"mif1")
    assert inspect(data) == ImageInfo("heic", "heif", "image/heif", 64, 48)


def test_multi_picture_jpeg_is_accepted_as_jpeg() -> None:
    assert inspect(samples.mpo_bytes(64, 48)) == ImageInfo("jpeg", "jpg", "image/jpeg", 64, 48)


def test_cmyk_jpeg_is_accepted() -> None:
    assert inspect(samples.jpeg_bytes(mode="CMYK")).format == "jpeg"


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "I;16"])
def test_png_in_any_mode_is_accepted(mode: str) -> None:
    assert inspect(samples.png_bytes(mode=mode)).format == "png"


def test_still_webp_in_an_animation_container_is_accepted() -> None:
    assert inspect(samples.animated_webp_bytes(frames=1)).format == "webp"


def test_content_decides_not_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "holiday.png"
    path.write_bytes(samples.jpeg_bytes())
    assert inspect_image(path, max_pixels=MAX_PIXELS).format == "jpeg"


def test_accepts_a_path_given_as_text(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(samples.png_bytes())
    assert inspect_image(str(path), max_pixels=MAX_PIXELS).format == "png"


def test_reads_a_file_object_from_its_start() -> None:
    upload = io.BytesIO(samples.png_bytes())
    upload.seek(0, io.SEEK_END)
    assert inspect_image(upload, max_pixels=MAX_PIXELS).format == "png"


def test_leaves_a_file_object_open() -> None:
    upload = io.BytesIO(samples.jpeg_bytes())
    inspect_image(upload, max_pixels=MAX_PIXELS)
    assert not upload.closed


def test_zero_bytes_are_an_empty_file() -> None:
    with pytest.raises(UnsupportedImage, match="empty file"):
        inspect(b"")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"just some text\n", id="text"),
        pytest.param(b"<!DOCTYPE html><html><body><img src=x></body></html>", id="html"),
        pytest.param(
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"/>', id="svg"
        ),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", id="pdf"),
        pytest.param(samples.zip_bytes(), id="zip"),
        pytest.param(samples.other_format_bytes("GIF"), id="gif"),
        pytest.param(samples.other_format_bytes("BMP"), id="bmp"),
        pytest.param(samples.other_format_bytes("TIFF"), id="tiff"),
        pytest.param(samples.other_format_bytes("AVIF"), id="avif"),
    ],
)
def test_other_content_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage, match="not a JPEG, PNG, WebP or HEIC/HEIF image"):
        inspect(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.jpeg_bytes(), id="jpeg"),
        pytest.param(samples.png_bytes(), id="png"),
        pytest.param(samples.webp_bytes(), id="webp"),
        pytest.param(samples.heic_bytes(), id="heic"),
    ],
)
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_image_is_unsupported(data: bytes, keep: float) -> None:
    with pytest.raises(UnsupportedImage):
        inspect(samples.truncated(data, keep))


def test_multi_picture_jpeg_cut_inside_its_main_picture_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        inspect(samples.truncated(samples.mpo_bytes(), 0.3))


def test_multi_picture_jpeg_with_a_cut_preview_is_accepted() -> None:
    # Only the first picture is shown or restored; the previews behind it do not matter.
    assert inspect(samples.truncated(samples.mpo_bytes(), 0.95)).format == "jpeg"


def test_jpeg_without_its_end_marker_is_unsupported() -> None:
    with pytest.raises(UnsupportedImage):
        inspect(samples.jpeg_bytes()[:-2])


def test_png_with_a_bad_chunk_checksum_is_unsupported() -> None:
    data = bytearray(samples.png_bytes())
    data[-13] ^= 0xFF  # last byte of the IDAT chunk's CRC, just before the 12-byte IEND chunk
    with pytest.raises(UnsupportedImage):
        inspect(bytes(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.animated_webp_bytes(), id="webp"),
        pytest.param(samples.animated_png_bytes(), id="apng"),
        pytest.param(
            samples.encode(samples.quadrants(), "HEIF", save_all=True, append_images=[samples.quadrants()]),
            id="heif-collection",
        ),
    ],
)
def test_animated_or_multi_image_file_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage, match="animated"):
        inspect(data)


def test_exactly_max_pixels_is_accepted() -> None:
    assert inspect(samples.jpeg_bytes(64, 48), max_pixels=64 * 48).width == 64


def test_one_pixel_over_max_pixels_is_too_large() -> None:
    with pytest.raises(ImageTooLarge, match="the limit is 3,071"):
        inspect(samples.jpeg_bytes(64, 48), max_pixels=64 * 48 - 1)


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param(samples.png_bomb, id="png"),
        pytest.param(samples.jpeg_bomb, id="jpeg"),
        pytest.param(samples.heic_bomb, id="heic"),
    ],
)
def test_pixel_bomb_is_too_large_without_decoding(bomb: Callable[[], bytes]) -> None:
    data = bomb()
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        inspect(data)
    assert time.perf_counter() - started < BOMB_TIME_LIMIT_SECONDS


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.png_bomb(5_000, 5_000), id="png"),
        pytest.param(samples.jpeg_bomb(5_000, 5_000), id="jpeg"),
        pytest.param(samples.heic_bomb(5_000, 5_000), id="heic"),
    ],
)
def test_pixels_are_counted_from_the_header_before_decoding(data: bytes) -> None:
    # Below Pillow's own guard; the missing pixel data would make decoding fail as corrupt.
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        inspect(data, max_pixels=1_000_000)


def test_pillow_bomb_warning_below_max_pixels_does_not_refuse_the_image() -> None:
    # 100 million pixels: above Image.MAX_IMAGE_PIXELS (a warning), below our limit.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(UnsupportedImage):
        inspect(samples.heic_bomb(10_000, 10_000), max_pixels=MAX_PIXELS)


@pytest.mark.filterwarnings("ignore")  # hostile EXIF and chunks make Pillow warn; that is fine
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(samples.jpeg_bytes(exif_orientation=6), id="jpeg"),
        pytest.param(samples.jpeg_bytes(mode="CMYK"), id="cmyk-jpeg"),
        pytest.param(samples.mpo_bytes(), id="mpo"),
        pytest.param(samples.png_bytes(mode="RGBA"), id="png"),
        pytest.param(samples.webp_bytes(), id="webp"),
        pytest.param(samples.webp_bytes(lossless=True, mode="RGBA"), id="webp-lossless"),
        pytest.param(samples.heic_bytes(), id="heic"),
    ],
)
def test_corrupted_bytes_give_an_answer_or_a_rejection_and_nothing_else(data: bytes) -> None:
    rng = random.Random(data)  # seeded by the sample: the same corruptions on every run
    for _ in range(150):
        corrupted = bytearray(data)
        for _ in range(rng.choice((1, 2, 4, 8))):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        with contextlib.suppress(ImageRejected):
            inspect(bytes(corrupted), max_pixels=10_000_000)
